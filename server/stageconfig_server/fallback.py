"""The legacy env settings as a fallback config when no row is stored (the plan's §6.1).

POEM takes Gemini, then OpenAI, then YandexGPT — whichever has a key; each other stage
has one provider (the contract's ``LEGACY_FALLBACK_ORDER``; the variable names are its
``LEGACY_ENV``). A fallback config has revision 0 and source FALLBACK.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from stageconfig_contract.facts import LEGACY_ENV, LEGACY_FALLBACK_ORDER
from stageconfig_server.domain import (
    ConfigSource,
    ConfigStatus,
    ProviderKind,
    StageConfig,
    StageType,
)
from stageconfig_server.settings import LegacySettings

DEFAULT_MODELS: dict[ProviderKind, str] = {
    ProviderKind.GEMINI: "gemini-2.5-flash",
    ProviderKind.OPENAI: "gpt-4o-mini",
    ProviderKind.YANDEX_GPT: "yandexgpt/latest",
    ProviderKind.SPEECHKIT: "alena",
    ProviderKind.SUNO: "V4_5",
    ProviderKind.PIKA: "fal-ai/pika/v2.2/text-to-video",
}
"""The model a legacy setting implies when its *_MODEL variable is not set."""


@dataclass(frozen=True, slots=True)
class LegacyEntry:
    """One provider's legacy settings."""

    provider_kind: ProviderKind
    api_key: str = field(repr=False)
    model: str
    options: dict[str, str]


def legacy_entry(legacy: LegacySettings, provider: ProviderKind) -> LegacyEntry:
    """What the legacy variables of ``provider`` (the contract's ``LEGACY_ENV``) hold."""
    names = LEGACY_ENV[provider.value]
    options = {option: legacy.value(env) for option, env in names.options.items()}
    return LegacyEntry(
        provider_kind=provider,
        api_key=legacy.value(names.api_key),
        model=legacy.value(names.model),
        options={option: value for option, value in options.items() if value},
    )


def legacy_entries(legacy: LegacySettings, stage: StageType) -> list[LegacyEntry]:
    """The stage's candidate legacy providers, in fallback order."""
    return [legacy_entry(legacy, ProviderKind[kind]) for kind in LEGACY_FALLBACK_ORDER[stage.value]]


def fallback_config(legacy: LegacySettings, stage: StageType) -> StageConfig | None:
    """The config the legacy settings supply for ``stage``, or None."""
    for entry in legacy_entries(legacy, stage):
        if entry.api_key:
            return StageConfig(
                stage_type=stage,
                provider_kind=entry.provider_kind,
                api_key=entry.api_key,
                model=entry.model or DEFAULT_MODELS[entry.provider_kind],
                revision=0,
                status=ConfigStatus.ACTIVE,
                source=ConfigSource.FALLBACK,
                options=dict(entry.options),
                status_reason="from the legacy env settings; no stored config yet",
            )
    return None
