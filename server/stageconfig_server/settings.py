"""Every setting the server reads, from the environment and an optional ``.env`` file.

Environment names are the documented public ones (architecture.md); they are fixed
here once, as aliases, and nowhere else. Secrets are ``SecretStr`` so ``repr`` and
``str`` of the settings never show them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from stageconfig_server.domain import ProviderKind

DEFAULT_DATA_DIR = Path("data")
DEFAULT_DATABASE_URL = f"sqlite+aiosqlite:///{DEFAULT_DATA_DIR / 'stageconfig.db'}"


class LegacySettings(BaseSettings):
    """The env settings workers used before stageconfig; the fallback when no row exists."""

    model_config = SettingsConfigDict(env_file=".env", extra="ignore", populate_by_name=False)

    gemini_api_key: SecretStr | None = Field(None, validation_alias="GEMINI_API_KEY")
    gemini_model: str | None = Field(None, validation_alias="GEMINI_MODEL")
    openai_api_key: SecretStr | None = Field(None, validation_alias="OPENAI_API_KEY")
    openai_model: str | None = Field(None, validation_alias="OPENAI_MODEL")
    yandex_gpt_api_key: SecretStr | None = Field(None, validation_alias="YANDEX_GPT_API_KEY")
    yandex_folder_id: str | None = Field(None, validation_alias="YANDEX_FOLDER_ID")
    yandex_gpt_model: str | None = Field(None, validation_alias="YANDEX_GPT_MODEL")
    speechkit_api_key: SecretStr | None = Field(None, validation_alias="SPEECHKIT_API_KEY")
    speechkit_voice: str | None = Field(None, validation_alias="SPEECHKIT_VOICE")
    suno_api_key: SecretStr | None = Field(None, validation_alias="SUNO_API_KEY")
    suno_model: str | None = Field(None, validation_alias="SUNO_MODEL")
    pika_api_key: SecretStr | None = Field(None, validation_alias="PIKA_API_KEY")
    pika_model: str | None = Field(None, validation_alias="PIKA_MODEL")


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

    metrics_address: str | None = Field(None, validation_alias="STAGECONFIG_METRICS_ADDRESS")
    """host:port of the Prometheus endpoint; off when unset."""

    provider_timeout_seconds: float = Field(
        10.0, gt=0, validation_alias="STAGECONFIG_PROVIDER_TIMEOUT_SECONDS"
    )
    """Bound on one provider call (key check / model listing)."""

    admin_webhook_url: str | None = Field(None, validation_alias="STAGECONFIG_ADMIN_WEBHOOK_URL")
    """Where admin events (a replaced model) are POSTed as JSON; off when unset."""

    log_level: str = Field("INFO", validation_alias="STAGECONFIG_LOG_LEVEL")

    openai_base_url: str | None = Field(None, validation_alias="STAGECONFIG_OPENAI_BASE_URL")
    gemini_base_url: str | None = Field(None, validation_alias="STAGECONFIG_GEMINI_BASE_URL")
    yandex_gpt_base_url: str | None = Field(
        None, validation_alias="STAGECONFIG_YANDEX_GPT_BASE_URL"
    )
    speechkit_base_url: str | None = Field(None, validation_alias="STAGECONFIG_SPEECHKIT_BASE_URL")
    suno_base_url: str | None = Field(None, validation_alias="STAGECONFIG_SUNO_BASE_URL")
    pika_base_url: str | None = Field(None, validation_alias="STAGECONFIG_PIKA_BASE_URL")

    @field_validator("admin_secret_key_previous", mode="before")
    @classmethod
    def _split_previous(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    def provider_base_urls(self) -> dict[ProviderKind, str | None]:
        """The base-URL override of every provider kind (None = the real endpoint)."""
        return {
            ProviderKind.OPENAI: self.openai_base_url,
            ProviderKind.GEMINI: self.gemini_base_url,
            ProviderKind.YANDEX_GPT: self.yandex_gpt_base_url,
            ProviderKind.SPEECHKIT: self.speechkit_base_url,
            ProviderKind.SUNO: self.suno_base_url,
            ProviderKind.PIKA: self.pika_base_url,
        }
