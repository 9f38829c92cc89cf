"""The legacy env settings as a fallback config when no row is stored (the plan's §6.1).

POEM takes Gemini, then OpenAI, then YandexGPT — whichever has a key; each other stage
has one provider. A fallback config has revision 0 and source FALLBACK.
"""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import SecretStr

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
    api_key: SecretStr | None
    model: str | None
    options: dict[str, str]


def legacy_entries(legacy: LegacySettings, stage: StageType) -> list[LegacyEntry]:
    """The stage's candidate legacy providers, in fallback order."""
    yandex_options = {"folder_id": legacy.yandex_folder_id} if legacy.yandex_folder_id else {}
    by_stage: dict[StageType, list[LegacyEntry]] = {
        StageType.POEM: [
            LegacyEntry(ProviderKind.GEMINI, legacy.gemini_api_key, legacy.gemini_model, {}),
            LegacyEntry(ProviderKind.OPENAI, legacy.openai_api_key, legacy.openai_model, {}),
            LegacyEntry(
                ProviderKind.YANDEX_GPT,
                legacy.yandex_gpt_api_key,
                legacy.yandex_gpt_model,
                yandex_options,
            ),
        ],
        StageType.VOICE: [
            LegacyEntry(
                ProviderKind.SPEECHKIT, legacy.speechkit_api_key, legacy.speechkit_voice, {}
            )
        ],
        StageType.SONG: [
            LegacyEntry(ProviderKind.SUNO, legacy.suno_api_key, legacy.suno_model, {})
        ],
        StageType.CLIP: [
            LegacyEntry(ProviderKind.PIKA, legacy.pika_api_key, legacy.pika_model, {})
        ],
    }
    return by_stage[stage]


def fallback_config(legacy: LegacySettings, stage: StageType) -> StageConfig | None:
    """The config the legacy settings supply for ``stage``, or None."""
    for entry in legacy_entries(legacy, stage):
        key = entry.api_key.get_secret_value() if entry.api_key else ""
        if key:
            return StageConfig(
                stage_type=stage,
                provider_kind=entry.provider_kind,
                api_key=key,
                model=entry.model or DEFAULT_MODELS[entry.provider_kind],
                revision=0,
                status=ConfigStatus.ACTIVE,
                source=ConfigSource.FALLBACK,
                options=dict(entry.options),
                status_reason="from the legacy env settings; no stored config yet",
            )
    return None
