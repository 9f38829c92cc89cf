"""The client's domain types: enums whose members carry their proto numbers, and a frozen
config. Proto messages stop at ``_convert``; user code sees only these.

Every enum member names its value in the contract (``POEM = "POEM",
pb.STAGE_TYPE_POEM``): the proto is the one source of truth, and a test fails when it
gains a value the client does not list. A value a newer server sends that this client
does not know is never an exception here: ``from_number`` answers None and ``_convert``
decides (an UNSPECIFIED member for statuses, causes, reasons and sources; an
unrepresentable config for stages and providers).
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from types import MappingProxyType
from typing import Self

from stageconfig_contract.facts import mask_key
from stageconfig_contract.v1 import stage_config_pb2 as pb


class ProtoEnum(enum.StrEnum):
    """A string enum (``StageType.POEM == "POEM"``) whose members know their proto number."""

    _value_: str
    number: int
    """The member's value in the contract."""

    # ``number`` has a default only for the type checker: ``StageType("POEM")`` is the
    # enum's lookup by value and never reaches ``__new__``, which runs once per member.
    def __new__(cls, name: str, number: int = 0) -> Self:
        member = str.__new__(cls, name)
        member._value_ = name
        member.number = int(number)
        return member

    @classmethod
    def from_number(cls, number: int) -> Self | None:
        """The member with this proto number, or None for one this client does not know."""
        for member in cls:
            if member.number == number:
                return member
        return None


class StageType(ProtoEnum):
    """A step of the content pipeline."""

    POEM = "POEM", pb.STAGE_TYPE_POEM
    VOICE = "VOICE", pb.STAGE_TYPE_VOICE
    SONG = "SONG", pb.STAGE_TYPE_SONG
    CLIP = "CLIP", pb.STAGE_TYPE_CLIP


class ProviderKind(ProtoEnum):
    """An AI provider."""

    YANDEX_GPT = "YANDEX_GPT", pb.PROVIDER_KIND_YANDEX_GPT
    GEMINI = "GEMINI", pb.PROVIDER_KIND_GEMINI
    OPENAI = "OPENAI", pb.PROVIDER_KIND_OPENAI
    SPEECHKIT = "SPEECHKIT", pb.PROVIDER_KIND_SPEECHKIT
    SUNO = "SUNO", pb.PROVIDER_KIND_SUNO
    PIKA = "PIKA", pb.PROVIDER_KIND_PIKA


class ConfigStatus(ProtoEnum):
    """Health of a stage's config as the server last saw it (UNSPECIFIED: a status this
    client does not know)."""

    ACTIVE = "ACTIVE", pb.CONFIG_STATUS_ACTIVE
    WARNING = "WARNING", pb.CONFIG_STATUS_WARNING
    INVALID = "INVALID", pb.CONFIG_STATUS_INVALID
    ERROR = "ERROR", pb.CONFIG_STATUS_ERROR
    UNVERIFIED = "UNVERIFIED", pb.CONFIG_STATUS_UNVERIFIED
    UNSPECIFIED = "UNSPECIFIED", pb.CONFIG_STATUS_UNSPECIFIED


class StatusCause(ProtoEnum):
    """One word saying why a status is not ACTIVE (UNSPECIFIED: none, or one this client
    does not know)."""

    AUTH = "AUTH", pb.STATUS_CAUSE_AUTH
    PERMISSION = "PERMISSION", pb.STATUS_CAUSE_PERMISSION
    QUOTA = "QUOTA", pb.STATUS_CAUSE_QUOTA
    RATE_LIMIT = "RATE_LIMIT", pb.STATUS_CAUSE_RATE_LIMIT
    REGION = "REGION", pb.STATUS_CAUSE_REGION
    UPSTREAM = "UPSTREAM", pb.STATUS_CAUSE_UPSTREAM
    NETWORK = "NETWORK", pb.STATUS_CAUSE_NETWORK
    MODEL_REPLACED = "MODEL_REPLACED", pb.STATUS_CAUSE_MODEL_REPLACED
    UNSPECIFIED = "UNSPECIFIED", pb.STATUS_CAUSE_UNSPECIFIED


class ConfigSource(ProtoEnum):
    """Where the server took a config from (UNSPECIFIED: a source this client does not
    know)."""

    DATABASE = "DATABASE", pb.CONFIG_SOURCE_DATABASE
    FALLBACK = "FALLBACK", pb.CONFIG_SOURCE_FALLBACK
    UNCONFIGURED = "UNCONFIGURED", pb.CONFIG_SOURCE_UNCONFIGURED
    UNSPECIFIED = "UNSPECIFIED", pb.CONFIG_SOURCE_UNSPECIFIED


class ChangeReason(ProtoEnum):
    """Why a revision was written (UNSPECIFIED: a reason this client does not know)."""

    ADMIN_UPDATE = "ADMIN_UPDATE", pb.CHANGE_REASON_ADMIN_UPDATE
    SYNC = "SYNC", pb.CHANGE_REASON_SYNC
    MODEL_REPLACED = "MODEL_REPLACED", pb.CHANGE_REASON_MODEL_REPLACED
    ROLLBACK = "ROLLBACK", pb.CHANGE_REASON_ROLLBACK
    IMPORT = "IMPORT", pb.CHANGE_REASON_IMPORT
    ROLLOUT_STARTED = "ROLLOUT_STARTED", pb.CHANGE_REASON_ROLLOUT_STARTED
    ROLLOUT_PROMOTED = "ROLLOUT_PROMOTED", pb.CHANGE_REASON_ROLLOUT_PROMOTED
    ROLLOUT_ABORTED = "ROLLOUT_ABORTED", pb.CHANGE_REASON_ROLLOUT_ABORTED
    UNSPECIFIED = "UNSPECIFIED", pb.CHANGE_REASON_UNSPECIFIED


class BreakerState(ProtoEnum):
    """A route's circuit breaker in one worker process (UNSPECIFIED: a state this client
    does not know)."""

    CLOSED = "CLOSED", pb.BREAKER_STATE_CLOSED
    OPEN = "OPEN", pb.BREAKER_STATE_OPEN
    HALF_OPEN = "HALF_OPEN", pb.BREAKER_STATE_HALF_OPEN
    UNSPECIFIED = "UNSPECIFIED", pb.BREAKER_STATE_UNSPECIFIED


def _empty_options() -> Mapping[str, str]:
    return MappingProxyType({})


@dataclass(frozen=True, slots=True)
class Route:
    """One way to serve a stage: a provider, a key, a model and options (a fallback of a
    ``StageConfig``, or its primary as ``StageConfig.routes()[0]``).

    ``repr`` never shows a plaintext key.
    """

    provider_kind: ProviderKind
    api_key: str = field(repr=False)
    model: str
    options: Mapping[str, str] = field(default_factory=_empty_options)
    status: ConfigStatus = ConfigStatus.UNSPECIFIED
    status_reason: str = ""
    status_cause: StatusCause = StatusCause.UNSPECIFIED
    api_key_masked: bool = False
    api_key_fingerprint: str = ""
    index: int = 0
    """Its place as the server numbers routes: 0 the primary, i ``fallbacks[i-1]``. A
    fallback this client cannot read is skipped, not renumbered around; 0 on a fallback
    built by hand means "its position" (``StageConfig.routes`` fills it in)."""

    def __repr__(self) -> str:
        key = self.api_key if self.api_key_masked else mask_key(self.api_key)
        return (
            f"Route(index={self.index}, provider_kind={self.provider_kind.value}, "
            f"model={self.model!r}, status={self.status.value}, api_key={key!r})"
        )

    __str__ = __repr__


@dataclass(frozen=True, slots=True)
class StageConfig:
    """One stage's provider configuration, immutable.

    ``api_key`` is plaintext when the caller has the worker role, a mask otherwise
    (``api_key_masked``). ``repr`` never shows a plaintext key.
    """

    stage_type: StageType
    provider_kind: ProviderKind
    api_key: str = field(repr=False)
    model: str
    revision: int
    status: ConfigStatus
    source: ConfigSource
    options: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    status_reason: str = ""
    api_key_masked: bool = False
    api_key_fingerprint: str = ""
    updated_at: datetime | None = None
    models_cache_updated_at: datetime | None = None
    status_cause: StatusCause = StatusCause.UNSPECIFIED
    fallbacks: tuple[Route, ...] = ()
    """Routes to use, in order, when the primary fails (``stageconfig.providers.
    run_with_fallback``); empty from a server without fallback routes."""

    @property
    def primary(self) -> Route:
        """The primary route: this config's own provider, key, model and options."""
        return Route(
            provider_kind=self.provider_kind,
            api_key=self.api_key,
            model=self.model,
            options=self.options,
            status=self.status,
            status_reason=self.status_reason,
            status_cause=self.status_cause,
            api_key_masked=self.api_key_masked,
            api_key_fingerprint=self.api_key_fingerprint,
        )

    def routes(self) -> tuple[Route, ...]:
        """Every route in the order to try them: the primary, then the fallbacks (each
        with its ``index``)."""
        fallbacks = (
            route if route.index else dataclasses.replace(route, index=position)
            for position, route in enumerate(self.fallbacks, start=1)
        )
        return (self.primary, *fallbacks)

    def for_route(self, route: Route) -> StageConfig:
        """This stage's config served by ``route`` alone (its provider, key, model and
        options; no fallbacks): what ``ProviderFactory.create`` builds a client from."""
        return dataclasses.replace(
            self,
            provider_kind=route.provider_kind,
            api_key=route.api_key,
            model=route.model,
            options=route.options,
            status=route.status,
            status_reason=route.status_reason,
            status_cause=route.status_cause,
            api_key_masked=route.api_key_masked,
            api_key_fingerprint=route.api_key_fingerprint,
            fallbacks=(),
        )

    def __repr__(self) -> str:
        key = self.api_key if self.api_key_masked else mask_key(self.api_key)
        more = f", fallbacks={len(self.fallbacks)}" if self.fallbacks else ""
        return (
            f"StageConfig(stage_type={self.stage_type.value}, "
            f"provider_kind={self.provider_kind.value}, model={self.model!r}, "
            f"revision={self.revision}, status={self.status.value}, "
            f"source={self.source.value}, api_key={key!r}{more})"
        )

    __str__ = __repr__
