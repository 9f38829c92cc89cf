"""How the admin page writes things for people: provider and stage names as people
write them (the contract's labels), ages (``3 h ago``) and times. The templates use
these as filters; the forms use them in sentences."""

from __future__ import annotations

import enum
from datetime import UTC, datetime

from stageconfig.admin import RolloutPolicy, RolloutSide
from stageconfig_contract.facts import PROVIDER_LABELS, PROVIDER_OPTIONS, STAGE_LABELS

_FIELD_LABELS = {
    "provider_kind": "Provider",
    "api_key": "Key",
    "model": "Model",
    "options": "Options",
    "status": "Status",
    "status_reason": "Reason",
    **{
        f"options.{option.name}": option.label
        for options in PROVIDER_OPTIONS.values()
        for option in options
    },
}


def _name(value: object) -> str:
    return str(value.value) if isinstance(value, enum.Enum) else str(value)


def provider_label(provider: object) -> str:
    """``OpenAI`` for ``ProviderKind.OPENAI`` or ``"OPENAI"``; a name the contract has no
    label for (``UNKNOWN(99)``) is shown as it is."""
    name = _name(provider)
    return PROVIDER_LABELS.get(name, name)


def stage_label(stage: object) -> str:
    """``Poem`` for ``StageType.POEM`` or ``"POEM"``."""
    name = _name(stage)
    return STAGE_LABELS.get(name, name)


def field_label(field: str) -> str:
    """How a history entry's changed field is headed (``Provider`` for
    ``provider_kind``); a field this page has no name for is shown as it is."""
    return _FIELD_LABELS.get(field, field)


def age(value: datetime | None, now: datetime | None = None) -> str:
    """How long ago: ``3 h ago``, ``just now``, ``never``."""
    if value is None:
        return "never"
    seconds = max(0, int(((now or datetime.now(UTC)) - value).total_seconds()))
    for unit, size in (("d", 86_400), ("h", 3_600), ("min", 60)):
        if seconds >= size:
            return f"{seconds // size} {unit} ago"
    return "just now"


def when(value: datetime | None) -> str:
    """A UTC time to the minute (``2026-12-01 09:42 UTC``), ``-`` for none."""
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC") if value else "-"


def report_age(value: datetime | None, now: datetime | None = None) -> str:
    """How long ago a client last reported, to the second below a minute (``4 s ago``):
    with report intervals of seconds, "just now" could hide a client going silent."""
    if value is None:
        return "never"
    seconds = max(0, int(((now or datetime.now(UTC)) - value).total_seconds()))
    return f"{seconds} s ago" if seconds < 60 else age(value, now)


def rollout_side(side: RolloutSide) -> str:
    """One side of a rollout: ``5 clients, 4 of 10 tasks failed (40.0 %)``."""
    clients = f"{side.clients} client{'' if side.clients == 1 else 's'}"
    if not side.finished:
        return f"{clients}, no task finished yet"
    return f"{clients}, {side.failed} of {side.finished} tasks failed ({side.failure_rate:.1%})"


def rollout_policy(policy: RolloutPolicy | None) -> str:
    """The rollout's policy in a sentence."""
    if policy is None:
        return "Manual: it runs until you promote or abort it."
    return (
        f"Automatic: after {policy.bake_seconds} s and {policy.min_tasks} canary tasks the "
        f"server promotes it if the canary's failure rate is at most "
        f"{policy.max_failure_rate_increase * 100:.1f} points above the stable side's, and "
        "aborts it otherwise."
    )
