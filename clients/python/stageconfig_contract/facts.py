"""The domain facts shared by the server, the clients and the admin tools.

Keyed by the enum names of the contract without their prefix (``"POEM"``,
``"YANDEX_GPT"``), so each side builds its own typed view from one table: the server's
``domain`` and the client's ``_types`` check themselves against these in their tests.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

ALLOWED_PROVIDERS: Mapping[str, tuple[str, ...]] = {
    "POEM": ("YANDEX_GPT", "GEMINI", "OPENAI"),
    "VOICE": ("SPEECHKIT",),
    "SONG": ("SUNO",),
    "CLIP": ("PIKA",),
}
"""The allowed matrix: the only providers each stage may choose, in display order."""


PROVIDER_LABELS: Mapping[str, str] = {
    "YANDEX_GPT": "Yandex GPT",
    "GEMINI": "Gemini",
    "OPENAI": "OpenAI",
    "SPEECHKIT": "Yandex SpeechKit",
    "SUNO": "Suno",
    "PIKA": "Pika",
}
"""How people write each provider's name (forms, tables, messages)."""

STAGE_LABELS: Mapping[str, str] = {
    "POEM": "Poem",
    "VOICE": "Voice",
    "SONG": "Song",
    "CLIP": "Clip",
}
"""How people write each stage's name."""


@dataclass(frozen=True, slots=True)
class ProviderOption:
    """One provider-specific option (``StageConfig.options``)."""

    name: str
    """The key in ``options`` (``folder_id``)."""
    label: str
    """How forms and tables name it."""
    required: bool
    """Whether the provider cannot work without it (UpdateConfig refuses to store it
    missing)."""
    hint: str = ""
    """One line telling an admin where to find the value."""


PROVIDER_OPTIONS: Mapping[str, tuple[ProviderOption, ...]] = {
    "YANDEX_GPT": (
        ProviderOption(
            "folder_id",
            "Folder ID",
            required=True,
            hint="the Yandex Cloud folder the key belongs to (b1g…)",
        ),
    ),
}
"""Every option each provider understands; anything else is rejected as a typo."""


@dataclass(frozen=True, slots=True)
class LegacyEnv:
    """The environment variables workers read before stageconfig, for one provider."""

    api_key: str
    """The variable holding the key (``GEMINI_API_KEY``)."""
    model: str
    """The variable holding the model (``GEMINI_MODEL``; SpeechKit's voice)."""
    options: Mapping[str, str] = field(default_factory=dict)
    """Option name → the variable holding it (``folder_id`` → ``YANDEX_FOLDER_ID``)."""

    @property
    def names(self) -> tuple[str, ...]:
        """Every variable of this provider."""
        return (self.api_key, self.model, *self.options.values())


LEGACY_ENV: Mapping[str, LegacyEnv] = {
    "GEMINI": LegacyEnv("GEMINI_API_KEY", "GEMINI_MODEL"),
    "OPENAI": LegacyEnv("OPENAI_API_KEY", "OPENAI_MODEL"),
    "YANDEX_GPT": LegacyEnv(
        "YANDEX_GPT_API_KEY", "YANDEX_GPT_MODEL", {"folder_id": "YANDEX_FOLDER_ID"}
    ),
    "SPEECHKIT": LegacyEnv("SPEECHKIT_API_KEY", "SPEECHKIT_VOICE"),
    "SUNO": LegacyEnv("SUNO_API_KEY", "SUNO_MODEL"),
    "PIKA": LegacyEnv("PIKA_API_KEY", "PIKA_MODEL"),
}
"""The legacy settings per provider, the server's fallback when no config is stored."""

LEGACY_FALLBACK_ORDER: Mapping[str, tuple[str, ...]] = {
    "POEM": ("GEMINI", "OPENAI", "YANDEX_GPT"),
    "VOICE": ("SPEECHKIT",),
    "SONG": ("SUNO",),
    "CLIP": ("PIKA",),
}
"""Which legacy provider a stage falls back to first: the first one with a key wins."""

LEGACY_ENV_NAMES: frozenset[str] = frozenset(
    name for legacy in LEGACY_ENV.values() for name in legacy.names
)
"""Every legacy variable (a test harness clears them so a developer's shell cannot leak
a fallback config into a run)."""


def base_url_env(provider: str) -> str:
    """The variable overriding a provider's endpoint: ``STAGECONFIG_<KIND>_BASE_URL``."""
    return f"STAGECONFIG_{provider}_BASE_URL"


def mask_key(api_key: str) -> str:
    """What a person may see of a key: its prefix up to a dash within the first 6
    characters and its last 4 (``sk-proj-abcdef…a1b2`` → ``sk-…a1b2``); keys shorter than
    12 characters show ``…`` and their last 2; the empty key stays empty."""
    if not api_key:
        return ""
    if len(api_key) < 12:
        return "…" + api_key[-2:]
    dash = api_key.find("-")
    prefix = api_key[: dash + 1] if 0 < dash <= 5 else ""
    return f"{prefix}…{api_key[-4:]}"


DURATION_BUCKET_BOUNDS_SECONDS: tuple[float, ...] = (
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    25.0,
    50.0,
    100.0,
    250.0,
    500.0,
)
"""The upper bounds of ``TaskOutcomes.duration_buckets`` (the proto's comment): bucket
``i`` counts task durations up to ``DURATION_BUCKET_BOUNDS_SECONDS[i]`` seconds, and one
bucket more (the 14th) counts the longer ones. Clients fill the buckets and the server
reads percentiles from them with the same bounds."""

DURATION_BUCKETS = len(DURATION_BUCKET_BOUNDS_SECONDS) + 1
"""How many duration buckets a TaskOutcomes carries (14)."""
