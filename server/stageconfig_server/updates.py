"""The change policy: UpdateConfig, RollbackConfig and the legacy import.

Every change goes the same way: validation (nothing read or written on bad input) →
the key (the one given, the stage's own, or the provider's newest) → the provider's
verdict → the model choice (``model_choice.settle``) → one commit through the view.
``validate_only`` stops before the commit and writes nothing.

What the verdict decides (``verification.Verdict``):

    rejected       KeyRejected, nothing written
    unverifiable   over a working config (ACTIVE or WARNING: a key the provider
                   confirmed) an UpdateConfig is refused (KeyUnverified) unless it sets
                   ``allow_unverified``, which stores it as UNVERIFIED; with nothing
                   working stored it is stored as ERROR (or UNVERIFIED when allowed),
                   keeping what was known of models
    listed         stored with the verdict's status (ACTIVE; UNVERIFIED for SpeechKit)

A change that would store exactly what is stored (provider, key, model, options) is
not written at all: no revision, no history row, nothing pushed.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime

from stageconfig_server import route_updates as routing
from stageconfig_server import update_messages as messages
from stageconfig_server.crypto import KeyCipher, fingerprint
from stageconfig_server.domain import (
    ChangeReason,
    ConfigStatus,
    ProviderKind,
    StageConfig,
    StageType,
    StatusCause,
)
from stageconfig_server.errors import (
    InvalidArgument,
    KeyRejected,
    KeyUnverified,
    NotFound,
    RevisionConflict,
)
from stageconfig_server.model_choice import settle
from stageconfig_server.rollout_types import RolloutRecord, RolloutSpec, admit_change
from stageconfig_server.store import ConfigStore
from stageconfig_server.validation import (
    check_allowed,
    check_api_key,
    check_comment,
    check_model,
    check_options,
    check_revision,
)
from stageconfig_server.verification import ProviderCheck, Settled
from stageconfig_server.view import ConfigView


@dataclass(frozen=True, slots=True)
class UpdateRequest:
    """An UpdateConfig call in domain terms."""

    stage_type: StageType
    provider_kind: ProviderKind
    api_key: str | None = None
    model: str | None = None
    options: Mapping[str, str] | None = None
    expected_revision: int | None = None
    validate_only: bool = False
    comment: str = ""
    allow_unverified: bool = False
    """Store a key the provider could not verify even over a working config."""
    rollout: RolloutSpec | None = None
    """Start a rollout of the config instead of storing it for everyone (issue 15)."""
    fallbacks: tuple[routing.RouteRequest, ...] | None = None
    """The whole ordered fallback list; None keeps the stored one, () clears it."""

    def __repr__(self) -> str:  # the key never reaches a log through repr
        key = "<hidden>" if self.api_key is not None else None
        return (
            f"UpdateRequest(stage_type={self.stage_type}, provider_kind={self.provider_kind}, "
            f"api_key={key}, model={self.model!r}, options={self.options!r}, "
            f"expected_revision={self.expected_revision}, validate_only={self.validate_only}, "
            f"allow_unverified={self.allow_unverified}, fallbacks={self.fallbacks!r})"
        )


@dataclass(frozen=True, slots=True)
class UpdateResult:
    """What an update stored (or, with validate_only, would store)."""

    config: StageConfig
    models: tuple[str, ...]
    written: bool
    """False with validate_only, and when the change was identical to the stored config
    (``config`` is then the stored one, at its current revision)."""
    rollout: RolloutRecord | None = None
    """The rollout the update started (``config`` is then its candidate)."""


@dataclass(frozen=True, slots=True)
class _Key:
    """A resolved key: plaintext for the provider, ciphertext and id for storage."""

    plaintext: str
    ciphertext: str  # "" for a new key: encrypted once, at the commit
    key_id: int | None
    is_new: bool

    def __repr__(self) -> str:
        return f"_Key(key_id={self.key_id}, is_new={self.is_new})"


@dataclass(frozen=True, slots=True)
class _Change:
    """One change to verify and commit."""

    stage: StageType
    provider: ProviderKind
    key: _Key
    requested_model: str | None
    options: Mapping[str, str]
    expected_revision: int | None
    actor: str
    reason: ChangeReason
    comment: str
    lenient_model: bool = False  # import: a model the provider lacks is replaced, not refused
    allow_unverified: bool = (
        False  # store an unverifiable key as UNVERIFIED, even over a working one
    )
    guard_working: bool = False  # refuse an unverifiable key over a working config (UpdateConfig)
    rollout: RolloutSpec | None = None  # commit as a rollout's candidate (cohort only)
    routes: tuple[routing.PlannedRoute, ...] | None = None  # None: keep the stored fallback routes


class ConfigUpdates:
    """Applies the change policy to the view."""

    def __init__(
        self,
        view: ConfigView,
        store: ConfigStore,
        cipher: KeyCipher,
        check: ProviderCheck,
        clock: Callable[[], datetime],
    ) -> None:
        self._view = view
        self._store = store
        self._cipher = cipher
        self._check = check
        self._clock = clock

    async def update(self, request: UpdateRequest, actor: str) -> UpdateResult:
        """Validate, verify with the provider, and store a stage's config (UpdateConfig).

        Raises InvalidArgument (nothing written) for bad input or a model the provider
        does not offer, KeyRejected when the provider refuses the key, KeyUnverified when
        it cannot verify a key that would replace a working config (without
        ``allow_unverified``), RevisionConflict on a stale ``expected_revision``.
        """
        stage, provider = request.stage_type, request.provider_kind
        check_allowed(stage, provider)
        if request.model is not None:
            check_model(request.model)
        if request.api_key is not None:
            check_api_key(request.api_key)
        check_comment(request.comment)
        check_revision("expected_revision", request.expected_revision)
        if request.fallbacks is not None:
            routing.check_route_requests(stage, request.fallbacks)

        current = self._view.stored(stage)
        admit_change(stage, self._view.rollout(stage), current is not None, request.rollout)
        _check_expected(stage, current, request.expected_revision)
        if request.options:
            options = check_options(provider, request.options)
        elif current is not None and current.provider_kind == provider:
            options = dict(current.options)
        else:
            options = check_options(provider, {})
        change = _Change(
            stage=stage,
            provider=provider,
            key=await self._resolve_key(stage, provider, request.api_key),
            requested_model=request.model,
            options=options,
            expected_revision=request.expected_revision,
            actor=actor,
            reason=ChangeReason.ADMIN_UPDATE,
            comment=request.comment,
            allow_unverified=request.allow_unverified,
            guard_working=True,
            rollout=request.rollout,
            routes=await routing.plan_routes(
                self._view, self._store, self._cipher, stage, request.fallbacks
            ),
        )
        return await self._verify_and_commit(change, validate_only=request.validate_only)

    async def rollback(
        self, stage: StageType, to_revision: int, expected_revision: int | None, actor: str
    ) -> StageConfig:
        """Write a new revision restoring ``to_revision``'s provider, key, model and options,
        re-verified with the provider like any update.

        Unlike UpdateConfig, an unverifiable key is not refused over a working config: a
        rollback carries no ``allow_unverified`` and restores a key the admin may not hold
        in plaintext any more, so refusing would leave no way back during an outage (it
        is stored as ERROR, as before). Restoring what is already stored writes nothing.
        """
        if to_revision <= 0:
            raise InvalidArgument("to_revision", "must be a positive revision")
        check_revision("expected_revision", expected_revision)
        entry = await self._store.log_entry(to_revision)
        if entry is None or entry.stage_type != stage:
            raise NotFound(f"revision {to_revision} is not a revision of stage {stage.value}")
        state = entry.state
        if not state.api_key_encrypted or state.api_key_id is None:
            raise NotFound(f"the key of revision {to_revision} is no longer stored")
        admit_change(stage, self._view.rollout(stage), True, None)
        _check_expected(stage, self._view.stored(stage), expected_revision)
        key = _Key(self._view.plaintext_of(state), state.api_key_encrypted, state.api_key_id, False)
        change = _Change(
            stage=stage,
            provider=state.provider_kind,
            key=key,
            requested_model=state.model,
            options=dict(state.options),
            expected_revision=expected_revision,
            actor=actor,
            reason=ChangeReason.ROLLBACK,
            comment=f"rollback to revision {to_revision}",
            routes=routing.restore_routes(self._view, state.fallbacks, to_revision),
        )
        return (await self._verify_and_commit(change, validate_only=False)).config

    async def import_config(self, config: StageConfig, actor: str) -> StageConfig | None:
        """Store a legacy config for a stage that has none (scripts/import-env).

        Returns None when the stage already has a stored config (idempotence).
        """
        if self._view.stored(config.stage_type) is not None:
            return None
        check_allowed(config.stage_type, config.provider_kind)
        change = _Change(
            stage=config.stage_type,
            provider=config.provider_kind,
            key=_Key(check_api_key(config.api_key), "", None, True),
            requested_model=config.model,
            options=check_options(config.provider_kind, config.options),
            expected_revision=0,
            actor=actor,
            reason=ChangeReason.IMPORT,
            comment="imported from the legacy env settings",
            lenient_model=True,
        )
        try:
            result = await self._verify_and_commit(change, validate_only=False)
        except RevisionConflict:
            return None
        return result.config

    async def _resolve_key(
        self, stage: StageType, provider: ProviderKind, api_key: str | None
    ) -> _Key:
        """The given key (new), else the stage's own for the same provider, else the
        newest key saved for ``provider``."""
        if api_key is not None:
            return _Key(api_key, "", None, True)
        held = self._view.held(stage)
        if held is not None and held.config.provider_kind == provider and held.api_key_encrypted:
            return _Key(held.config.api_key, held.api_key_encrypted, held.api_key_id, False)
        newest = await self._store.newest_key(provider)
        if newest is None:
            raise InvalidArgument(
                "api_key", f"is required: no key for {provider.value} has been saved before"
            )
        stored = newest.api_key_encrypted
        return _Key(self._cipher.decrypt_key(stored), stored, newest.id, False)

    async def _verify_and_commit(self, change: _Change, *, validate_only: bool) -> UpdateResult:
        key = change.key
        verdict = await self._check.verdict(change.provider, key.plaintext, change.options)
        if verdict.status is ConfigStatus.INVALID:
            raise KeyRejected(
                messages.key_rejected(verdict), verdict.cause.value if verdict.cause else "AUTH"
            )
        routes = await routing.settle_routes(change.routes, self._check, self._clock())
        # Read after the (slow) provider calls: what the change would replace now.
        current = self._view.stored(change.stage)
        _check_expected(change.stage, current, change.expected_revision)
        same = current if current is not None and current.provider_kind == change.provider else None
        settled = settle(
            verdict,
            change.provider,
            change.requested_model,
            same,
            self._clock(),
            allow_unverified=change.allow_unverified,
            lenient_model=change.lenient_model,
        )
        final = routing.final_routes(routes, current)
        routing.check_duplicates(
            (change.provider, fingerprint(key.plaintext), settled.model), final
        )
        if (
            current is not None
            and _identical(change, settled, current)
            and (routes is None or routing.same_routes(final, current.fallbacks))
        ):
            # Nothing would change: no revision, no history row, no push.
            return UpdateResult(current, settled.models, written=False)
        if (
            verdict.unverifiable
            and change.guard_working
            and not change.allow_unverified
            and current is not None
            and current.status in _WORKING
            and not _same_credentials(change, current)
        ):
            raise KeyUnverified(
                messages.key_unverified(verdict, change.stage, current),
                verdict.cause.value if verdict.cause else StatusCause.UPSTREAM.value,
            )
        write = settled.write(
            change.stage,
            change.provider,
            ciphertext=key.ciphertext,
            key_fingerprint=fingerprint(key.plaintext),
            key_id=key.key_id,
            new_key=key.is_new,
            options=change.options,
            actor=change.actor,
            reason=change.reason,
            comment=change.comment,
        )
        write = routing.with_routes(write, routes, self._cipher)
        if validate_only:
            preview = routing.preview(self._view, write, key.plaintext, routes)
            return UpdateResult(preview, settled.models, written=False)
        if not write.api_key_encrypted:  # a new key: encrypted once, here
            write = replace(write, api_key_encrypted=self._cipher.encrypt_key(key.plaintext))
        if change.rollout is not None:
            committed = await self._view.start_rollout(
                write, change.expected_revision, key.plaintext, change.rollout
            )
        else:
            committed = await self._view.commit(write, change.expected_revision, key.plaintext)
        return UpdateResult(committed.config, settled.models, True, committed.rollout)


_WORKING = (ConfigStatus.ACTIVE, ConfigStatus.WARNING)
"""Statuses of a config whose key the provider confirmed (WARNING: only the model was
replaced). An unverifiable key does not displace one of these without allow_unverified.
UNVERIFIED is not among them: nothing proved that key either (and a SpeechKit key can
never be proven, so counting it would make every SpeechKit key change need the flag)."""


def _same_credentials(change: _Change, current: StageConfig) -> bool:
    """Whether ``change`` keeps what the provider checks: provider, key and options.

    Such a change displaces no proven key (only the model may differ), so an
    unreachable provider does not refuse it; it is stored as before (ERROR).
    """
    return (
        current.provider_kind == change.provider
        and current.api_key == change.key.plaintext
        and dict(current.options) == dict(change.options)
    )


def _identical(change: _Change, settled: Settled, current: StageConfig) -> bool:
    """Whether storing ``change`` would leave the stage's provider, key, model and
    options exactly as they are."""
    return _same_credentials(change, current) and current.model == settled.model


def _check_expected(stage: StageType, current: StageConfig | None, expected: int | None) -> None:
    # Early answer from the view; the repository checks again inside the transaction.
    actual = current.revision if current else 0
    if expected is not None and expected != actual:
        raise RevisionConflict(
            f"stage {stage.value} is at revision {actual}, not {expected}: reload and retry",
            actual,
        )
