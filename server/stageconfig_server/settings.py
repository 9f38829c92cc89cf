"""Every setting the server reads, from the environment and an optional ``.env`` file.

Environment names are the documented public ones (architecture.md): the server's own
are fixed here once, as aliases; the provider ones (legacy fallback, base-URL
overrides) come from the contract's table (``stageconfig_contract.facts``). Secrets
are ``SecretStr`` so ``repr`` and ``str`` of the settings never show them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from stageconfig_contract.facts import LEGACY_ENV, base_url_env
from stageconfig_server.domain import ProviderKind

DEFAULT_DATA_DIR = Path("data")
DEFAULT_DATABASE_URL = f"sqlite+aiosqlite:///{DEFAULT_DATA_DIR / 'stageconfig.db'}"


def _env(name: str) -> Any:
    """A field read from the variable ``name`` (absent: None)."""
    return Field(None, validation_alias=name)


_GEMINI, _OPENAI, _YANDEX = LEGACY_ENV["GEMINI"], LEGACY_ENV["OPENAI"], LEGACY_ENV["YANDEX_GPT"]
_SPEECHKIT, _SUNO, _PIKA = LEGACY_ENV["SPEECHKIT"], LEGACY_ENV["SUNO"], LEGACY_ENV["PIKA"]


class LegacySettings(BaseSettings):
    """The env settings workers used before stageconfig; the fallback when no row exists.

    The variable names are the contract's ``LEGACY_ENV`` table; ``value`` reads any of
    them by name, so the fallback needs no table of its own. Each field is named after
    its variable (lower case), which a test checks against the contract.
    """

    model_config = SettingsConfigDict(env_file=".env", extra="ignore", populate_by_name=False)

    gemini_api_key: SecretStr | None = _env(_GEMINI.api_key)
    gemini_model: str | None = _env(_GEMINI.model)
    openai_api_key: SecretStr | None = _env(_OPENAI.api_key)
    openai_model: str | None = _env(_OPENAI.model)
    yandex_gpt_api_key: SecretStr | None = _env(_YANDEX.api_key)
    yandex_folder_id: str | None = _env(_YANDEX.options["folder_id"])
    yandex_gpt_model: str | None = _env(_YANDEX.model)
    speechkit_api_key: SecretStr | None = _env(_SPEECHKIT.api_key)
    speechkit_voice: str | None = _env(_SPEECHKIT.model)
    suno_api_key: SecretStr | None = _env(_SUNO.api_key)
    suno_model: str | None = _env(_SUNO.model)
    pika_api_key: SecretStr | None = _env(_PIKA.api_key)
    pika_model: str | None = _env(_PIKA.model)

    def value(self, env_name: str) -> str:
        """The value of one legacy variable (a ``LEGACY_ENV`` name); empty when unset."""
        raw: SecretStr | str | None = getattr(self, env_name.lower())
        if isinstance(raw, SecretStr):
            return raw.get_secret_value()
        return raw or ""


class Settings(BaseSettings):
    """The server's configuration (see the README's configuration table)."""

    model_config = SettingsConfigDict(env_file=".env", extra="ignore", populate_by_name=False)

    address: str = Field("127.0.0.1:50051", validation_alias="STAGECONFIG_ADDRESS")
    """gRPC listen address, host:port (port 0 picks a free one)."""

    database_url: str = Field(DEFAULT_DATABASE_URL, validation_alias="STAGECONFIG_DATABASE_URL")
    """SQLAlchemy async URL: sqlite+aiosqlite:///path or postgresql+asyncpg://…"""

    admin_secret_key: SecretStr | None = Field(None, validation_alias="ADMIN_SECRET_KEY")
    """The secret the API-key encryption key is derived from."""

    admin_secret_key_previous: Annotated[list[SecretStr], NoDecode] = Field(
        default_factory=list, validation_alias="ADMIN_SECRET_KEY_PREVIOUS"
    )
    """Older secrets still accepted for decryption during a rotation (comma list)."""

    tokens: SecretStr | None = Field(None, validation_alias="STAGECONFIG_TOKENS")
    """Bearer tokens, ``name:role:secret`` entries separated by commas."""

    tokens_file: Path | None = Field(None, validation_alias="STAGECONFIG_TOKENS_FILE")
    """A file with one ``name:role:secret`` entry per line."""

    tls_cert: Path | None = Field(None, validation_alias="STAGECONFIG_TLS_CERT")
    tls_key: Path | None = Field(None, validation_alias="STAGECONFIG_TLS_KEY")
    tls_client_ca: Path | None = Field(None, validation_alias="STAGECONFIG_TLS_CLIENT_CA")
    """A client CA turns on mutual TLS."""

    insecure: bool = Field(False, validation_alias="STAGECONFIG_INSECURE")
    """Allow a non-loopback address without tokens or TLS (explicit opt-in)."""

    reflection_requires_token: bool = Field(
        False, validation_alias="STAGECONFIG_REFLECTION_REQUIRES_TOKEN"
    )
    """Lock server reflection behind any valid token (it is open by default)."""

    sync_interval_hours: float = Field(
        24.0, gt=0, validation_alias="STAGECONFIG_SYNC_INTERVAL_HOURS"
    )
    """Period of the model-cache sync."""

    heartbeat_seconds: float = Field(10.0, gt=0, validation_alias="STAGECONFIG_HEARTBEAT_SECONDS")
    """WatchConfig heartbeat period."""

    rollout_check_seconds: float = Field(
        5.0, gt=0, validation_alias="STAGECONFIG_ROLLOUT_CHECK_SECONDS"
    )
    """How often running rollouts with a policy are judged (promoted or aborted)."""

    watch_send_timeout_seconds: float = Field(
        10.0, gt=0, validation_alias="STAGECONFIG_WATCH_SEND_TIMEOUT_SECONDS"
    )
    """How long one write to a WatchConfig stream may take before that watcher is
    dropped (it reconnects and resumes from its revision)."""

    watch_retained_changes: int = Field(
        10_000, ge=1, validation_alias="STAGECONFIG_WATCH_RETAINED_CHANGES"
    )
    """How many recent changes are kept in memory to resume watchers from; a client
    further behind gets a fresh snapshot."""

    max_connection_age_seconds: float = Field(
        1800.0, ge=0, validation_alias="STAGECONFIG_MAX_CONNECTION_AGE_SECONDS"
    )
    """Close client connections after this age (gRPC adds ±10 % jitter) so long
    WatchConfig streams rebalance across replicas; 0 turns it off."""

    max_connection_age_grace_seconds: float = Field(
        30.0, ge=0, validation_alias="STAGECONFIG_MAX_CONNECTION_AGE_GRACE_SECONDS"
    )
    """How long calls on an aged connection may continue before they are cancelled."""

    max_streams_per_peer: int = Field(64, ge=0, validation_alias="STAGECONFIG_MAX_STREAMS_PER_PEER")
    """Open WatchConfig streams one client connection may hold; beyond it a new stream
    gets RESOURCE_EXHAUSTED. 0 turns the limit off."""

    max_streams_per_token: int = Field(
        10_000, ge=0, validation_alias="STAGECONFIG_MAX_STREAMS_PER_TOKEN"
    )
    """Open WatchConfig streams all callers of one token name may hold together (size it
    to the fleet: every worker usually shares one token). 0 turns the limit off."""

    metrics_address: str | None = Field(None, validation_alias="STAGECONFIG_METRICS_ADDRESS")
    """host:port of the Prometheus endpoint; off when unset."""

    provider_timeout_seconds: float = Field(
        10.0, gt=0, validation_alias="STAGECONFIG_PROVIDER_TIMEOUT_SECONDS"
    )
    """Bound on one provider call (key check / model listing)."""

    admin_webhook_url: str | None = Field(None, validation_alias="STAGECONFIG_ADMIN_WEBHOOK_URL")
    """Where admin events (a replaced model) are POSTed as JSON; off when unset."""

    log_level: str = Field("INFO", validation_alias="STAGECONFIG_LOG_LEVEL")

    openai_base_url: str | None = _env(base_url_env(ProviderKind.OPENAI.value))
    gemini_base_url: str | None = _env(base_url_env(ProviderKind.GEMINI.value))
    yandex_gpt_base_url: str | None = _env(base_url_env(ProviderKind.YANDEX_GPT.value))
    speechkit_base_url: str | None = _env(base_url_env(ProviderKind.SPEECHKIT.value))
    suno_base_url: str | None = _env(base_url_env(ProviderKind.SUNO.value))
    pika_base_url: str | None = _env(base_url_env(ProviderKind.PIKA.value))
    """Provider endpoint overrides (``STAGECONFIG_<KIND>_BASE_URL``), one per kind."""

    @field_validator("admin_secret_key_previous", mode="before")
    @classmethod
    def _split_previous(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    def provider_base_urls(self) -> dict[ProviderKind, str | None]:
        """The base-URL override of every provider kind (None = the real endpoint)."""
        return {kind: getattr(self, f"{kind.value.lower()}_base_url") for kind in ProviderKind}
