"""Validators and refusals: which new configs this client takes, and which it NACKs.

Before a stage's new config replaces the one held, every validator added with
``ConfigClient.add_validator`` runs on it (on the watch thread); the first that raises
refuses it. A refused config is never applied: the stage keeps the config it had (its
last-known-good; none if it had none), the other stages of the same message apply
normally, and the next revision of the stage is validated afresh. A config this client
cannot represent (a stage's provider kind from a newer server, ``_messages``) is refused
the same way.

Each stage remembers its newest refusal (revision and reason) for the reports. A reason
is the exception's message with every key of the configs involved masked
(``mask_key``: a validator's message may quote the config), control characters removed,
and at most ``MAX_REASON_LENGTH`` characters.

**applied_revision.** The stream position (``ConfigSnapshot.revision``) moves past a
refused revision, so a resume never replays it. What the client *applied* is held back:
while a stage's newest refusal is newer than the config it uses, ``applied_revision`` is
at most the refused revision minus one — every revision up to ``applied_revision`` is in
use (or did not concern this client). The next good revision of that stage clears it.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from stageconfig._types import StageConfig, StageType
from stageconfig_contract.facts import mask_key

log = logging.getLogger("stageconfig.client")

Validator = Callable[[StageConfig], object]
"""``fn(config)``: raise to refuse ``config``; any return value accepts it."""

MAX_REASON_LENGTH = 512
"""Characters of a refusal's reason (the rest is cut, with an ellipsis)."""


@dataclass(frozen=True, slots=True)
class Refusal:
    """A stage's newest refused revision, and why."""

    revision: int
    reason: str


def clean_reason(message: str, *configs: StageConfig | None) -> str:
    """``message`` as it may leave the process: the keys of ``configs`` (their fallback
    routes' too) masked, control characters replaced by spaces, at most
    ``MAX_REASON_LENGTH`` characters."""
    for config in configs:
        if config is None:
            continue
        for route in config.routes():  # the primary's key and every fallback's
            if route.api_key and not route.api_key_masked:
                message = message.replace(route.api_key, mask_key(route.api_key))
    text = "".join(c if c.isprintable() else " " for c in message).strip()
    if len(text) > MAX_REASON_LENGTH:
        text = text[: MAX_REASON_LENGTH - 1] + "…"
    return text or "refused (no reason given)"


class Gate:
    """The validators, and each stage's newest refusal.

    Validators are added from any thread and run on the watch thread: the tuple is
    replaced whole, never mutated. Refusals are written by the watch thread and read by
    the reporter; each is replaced whole under a lock.
    """

    def __init__(self) -> None:
        self._validators: tuple[Validator, ...] = ()
        self._refusals: dict[StageType, Refusal] = {}
        self._lock = threading.Lock()

    def reset_after_fork(self) -> None:
        """In a forked child: a fresh lock (the refusals and validators are kept)."""
        self._lock = threading.Lock()

    def add(self, validator: Validator) -> Callable[[], None]:
        """Add ``validator``; returns a function that removes it."""
        if not callable(validator):
            raise TypeError("a validator is a callable taking a StageConfig")
        with self._lock:
            self._validators = (*self._validators, validator)

        def remove() -> None:
            with self._lock:
                self._validators = tuple(v for v in self._validators if v is not validator)

        return remove

    @property
    def refusals(self) -> Mapping[StageType, Refusal]:
        """Each stage's newest refusal (a copy)."""
        with self._lock:
            return dict(self._refusals)

    def admit(self, config: StageConfig, held: StageConfig | None) -> bool:
        """Whether ``config`` may replace ``held`` (the stage's config now): True when it
        is the one held already or every validator accepts it; False (recorded as a
        refusal) when one raises. A revision refused before is refused again without
        running the validators (a fresh snapshot after a reconnect carries it again)."""
        if held is not None and held.revision == config.revision:
            return True
        refused = self._refusals.get(config.stage_type)
        if refused is not None and refused.revision == config.revision:
            return False
        for validator in self._validators:
            try:
                validator(config)
            except Exception as exc:  # the validator's verdict, whatever its type
                reason = clean_reason(str(exc) or type(exc).__name__, config, held)
                self.refuse(config.stage_type, config.revision, reason)
                log.warning(
                    "stageconfig: a validator refused the %s config of revision %d (%s); "
                    "the stage keeps its previous config",
                    config.stage_type,
                    config.revision,
                    reason,
                )
                return False
        return True

    def refuse(self, stage: StageType, revision: int, reason: str) -> None:
        """Record that ``stage``'s config at ``revision`` was refused (an older refusal
        than the one held changes nothing)."""
        with self._lock:
            previous = self._refusals.get(stage)
            if previous is None or previous.revision < revision:
                self._refusals[stage] = Refusal(revision, clean_reason(reason))

    def applied_revision(self, position: int, in_use: Mapping[StageType, StageConfig]) -> int:
        """The newest revision this client applied, given the stream ``position`` and
        the configs in use (the rule in the module docstring)."""
        applied = position
        for stage, refusal in self.refusals.items():
            used = in_use.get(stage)
            if used is None or refusal.revision > used.revision:
                applied = min(applied, refusal.revision - 1)
        return max(applied, 0)
