"""``AdminClient``: a typed, synchronous client for the admin RPCs.

What ``stageconfigctl`` and the web page are built on. Every answer is a frozen dataclass
(proto types stop in this module), every failure an exception from ``stageconfig.errors``
(never ``grpc.RpcError``), and every key it returns is masked — even on a development
server without tokens, where the anonymous caller could receive plaintext keys::

    with AdminClient("127.0.0.1:50051", token=admin_token) as admin:
        poem = admin.list_configs().stage(StageType.POEM)
        admin.update_config(
            StageType.POEM, ProviderKind.OPENAI, model="gpt-4o",
            expected_revision=poem.revision,   # ConflictError if someone saved meanwhile
        )
        for event in admin.watch([StageType.POEM], duration=60):
            print(event)
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from types import TracebackType
from typing import Any, TypeVar

import grpc

from stageconfig._channel import create_channel
from stageconfig._convert import (
    UnrepresentableConfig,
    config_from_pb,
    provider_from_pb,
    provider_to_pb,
    reason_from_pb,
    source_from_pb,
    stage_from_pb,
    stage_to_pb,
    status_from_pb,
    time_from_pb,
)
from stageconfig._types import (
    ChangeReason,
    ConfigSource,
    ConfigStatus,
    ProviderKind,
    StageConfig,
    StageType,
)
from stageconfig.errors import translate_rpc_error
from stageconfig.tls import TlsConfig
from stageconfig_contract.facts import mask_key
from stageconfig_contract.v1 import stage_config_pb2 as pb
from stageconfig_contract.v1 import stage_config_pb2_grpc as pbg

T = TypeVar("T")

DEFAULT_TIMEOUT_SECONDS = 30.0
"""Deadline of one unary call: above the server's provider timeout (10 s by default),
which bounds UpdateConfig, RollbackConfig and refreshes."""


def _masked(config: StageConfig) -> StageConfig:
    # A server without tokens treats every caller as a worker and sends plaintext keys;
    # admin tools must still never show one.
    if config.api_key_masked or not config.api_key:
        return config
    return dataclasses.replace(config, api_key=mask_key(config.api_key), api_key_masked=True)


# --- what the admin calls return ------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StageView:
    """One stage as an admin sees it (ListConfigs)."""

    stage_type: StageType
    source: ConfigSource
    """DATABASE, FALLBACK (legacy env of the server) or UNCONFIGURED."""
    config: StageConfig | None
    """The config, key masked; None when the stage is UNCONFIGURED."""
    models: tuple[str, ...]
    """The cached model list (models_cache); empty unless stored."""
    allowed_providers: tuple[ProviderKind, ...]
    """The providers this stage may use."""

    @property
    def revision(self) -> int:
        """The stage's revision (0: nothing stored), what ``expected_revision`` wants."""
        if self.config is None or self.source is not ConfigSource.DATABASE:
            return 0
        return self.config.revision


@dataclass(frozen=True, slots=True)
class ConfigOverview:
    """Every stage (ListConfigs) and the server's head revision."""

    stages: tuple[StageView, ...]
    head_revision: int

    def stage(self, stage: StageType | str) -> StageView:
        """The view of one stage."""
        wanted = StageType(stage)
        for view in self.stages:
            if view.stage_type is wanted:
                return view
        raise KeyError(wanted.value)


@dataclass(frozen=True, slots=True)
class UpdateResult:
    """What UpdateConfig stored (or, with ``validate_only``, would store)."""

    config: StageConfig
    """The config, key masked."""
    models: tuple[str, ...]
    """The models the provider offers for this key."""
    written: bool
    """False with ``validate_only``."""


@dataclass(frozen=True, slots=True)
class ModelList:
    """A stage's cached model list (ListModels)."""

    models: tuple[str, ...]
    updated_at: datetime | None
    selected_model: str
    provider_kind: ProviderKind
    status: ConfigStatus
    status_reason: str


@dataclass(frozen=True, slots=True)
class RefreshResult:
    """What one stage's model refresh found (RefreshModels)."""

    stage_type: StageType
    status: ConfigStatus
    status_reason: str
    models: tuple[str, ...]
    selected_model: str
    replaced_model: str
    """The model that vanished and was replaced; empty when none was."""
    revision: int
    """The stage's revision after the refresh."""


@dataclass(frozen=True, slots=True)
class FieldChange:
    """One field's old and new value in a history entry (keys masked)."""

    field: str
    old_value: str
    new_value: str


@dataclass(frozen=True, slots=True)
class HistoryEntry:
    """One revision of the log."""

    revision: int
    stage_type: StageType
    time: datetime | None
    actor: str
    """The token name that made the change, or the sync's name."""
    reason: ChangeReason
    changes: tuple[FieldChange, ...]
    comment: str


@dataclass(frozen=True, slots=True)
class HistoryPage:
    """A page of history, newest first; pass ``next_page_token`` for the next one."""

    entries: tuple[HistoryEntry, ...]
    next_page_token: str
    """Empty on the last page."""


@dataclass(frozen=True, slots=True)
class WatcherInfo:
    """One connected WatchConfig stream (ListWatchers)."""

    client_id: str
    peer: str
    actor: str
    stage_types: tuple[StageType, ...]
    connected_since: datetime | None
    last_revision: int
    """The newest revision the stream has been sent."""


@dataclass(frozen=True, slots=True)
class WatcherList:
    """Every connected stream and the server's head revision."""

    watchers: tuple[WatcherInfo, ...]
    head_revision: int


@dataclass(frozen=True, slots=True)
class SnapshotEvent:
    """Every watched stage at one revision (the first event, or after a gap)."""

    revision: int
    configs: tuple[StageConfig, ...]


@dataclass(frozen=True, slots=True)
class ChangeEvent:
    """One stage at a new revision."""

    revision: int
    config: StageConfig
    reason: ChangeReason


@dataclass(frozen=True, slots=True)
class HeartbeatEvent:
    """The stream is alive; the server is at ``head_revision``."""

    head_revision: int
    server_time: datetime | None


WatchEvent = SnapshotEvent | ChangeEvent | HeartbeatEvent
"""What ``AdminClient.watch`` yields."""


# --- proto → admin types ----------------------------------------------------------------


def _known_stage(value: int) -> StageType:
    stage = stage_from_pb(value)
    if stage is None:
        raise UnrepresentableConfig(None, "stage_type", value, 0)
    return stage


def _known_provider(value: int) -> ProviderKind:
    provider = provider_from_pb(value)
    if provider is None:
        raise UnrepresentableConfig(None, "provider_kind", value, 0)
    return provider


def _stage_view(message: pb.StageConfigView) -> StageView:
    source = source_from_pb(message.config.source)
    configured = (
        source is not ConfigSource.UNCONFIGURED
        and message.config.provider_kind != pb.PROVIDER_KIND_UNSPECIFIED
    )
    return StageView(
        stage_type=_known_stage(message.stage_type),
        source=source if configured else ConfigSource.UNCONFIGURED,
        config=_masked(config_from_pb(message.config)) if configured else None,
        models=tuple(message.models),
        allowed_providers=tuple(
            p for p in map(provider_from_pb, message.allowed_providers) if p is not None
        ),
    )


def _history_entry(message: pb.HistoryEntry) -> HistoryEntry:
    return HistoryEntry(
        revision=message.revision,
        stage_type=_known_stage(message.stage_type),
        time=time_from_pb(message.time, message.HasField("time")),
        actor=message.actor,
        reason=reason_from_pb(message.reason),
        changes=tuple(FieldChange(c.field, c.old_value, c.new_value) for c in message.changes),
        comment=message.comment,
    )


def _watcher(message: pb.WatcherInfo) -> WatcherInfo:
    return WatcherInfo(
        client_id=message.client_id,
        peer=message.peer,
        actor=message.actor,
        stage_types=tuple(s for s in map(stage_from_pb, message.stage_types) if s is not None),
        connected_since=time_from_pb(message.connected_since, message.HasField("connected_since")),
        last_revision=message.last_revision,
    )


def _watch_event(message: pb.WatchConfigResponse) -> WatchEvent | None:
    kind = message.WhichOneof("event")
    if kind == "snapshot":
        return SnapshotEvent(
            revision=message.snapshot.revision,
            configs=tuple(_masked(config_from_pb(c)) for c in message.snapshot.configs),
        )
    if kind == "change":
        return ChangeEvent(
            revision=message.change.revision,
            config=_masked(config_from_pb(message.change.config)),
            reason=reason_from_pb(message.change.reason),
        )
    if kind == "heartbeat":
        beat = message.heartbeat
        return HeartbeatEvent(
            head_revision=beat.head_revision,
            server_time=time_from_pb(beat.server_time, beat.HasField("server_time")),
        )
    return None  # an event kind newer than this client: skip it


# --- the client -------------------------------------------------------------------------


class WatchStream(Iterator[WatchEvent]):
    """A live WatchConfig stream: iterate it for events, ``cancel()`` to end it (from any
    thread). Iteration ends when the stream is cancelled or its ``duration`` is over."""

    def __init__(self, call: Any, *, ends_at_deadline: bool) -> None:
        self._call = call
        self._ends_at_deadline = ends_at_deadline
        self._cancelled = False

    def __iter__(self) -> WatchStream:
        return self

    def __next__(self) -> WatchEvent:
        while True:
            try:
                message = next(self._call)
            except grpc.RpcError as error:
                code = error.code()
                if self._cancelled and code == grpc.StatusCode.CANCELLED:
                    raise StopIteration from None
                if self._ends_at_deadline and code == grpc.StatusCode.DEADLINE_EXCEEDED:
                    raise StopIteration from None
                raise translate_rpc_error(error) from error
            event = _watch_event(message)
            if event is not None:
                return event

    def cancel(self) -> None:
        """End the stream; a blocked iteration stops."""
        self._cancelled = True
        self._call.cancel()

    def __enter__(self) -> WatchStream:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.cancel()


class AdminClient:
    """A synchronous client for the admin RPCs of one stageconfig server.

    ``token`` is an admin token (``STAGECONFIG_TOKENS`` entry with role ``admin``); omit
    it for a development server without tokens. ``tls`` (implied by any certificate)
    turns on TLS with ``root_certificates`` or the system roots; ``client_certificate``
    and ``client_key`` present a client certificate (mTLS). ``timeout`` bounds each
    unary call. Thread-safe; close it (or use ``with``) to release the channel.
    """

    def __init__(
        self,
        target: str,
        token: str | None = None,
        *,
        tls: bool = False,
        root_certificates: bytes | None = None,
        client_certificate: bytes | None = None,
        client_key: bytes | None = None,
        timeout: float = DEFAULT_TIMEOUT_SECONDS,
    ) -> None:
        self.target = target
        self.timeout = timeout
        self._channel = create_channel(
            target,
            token=token,
            # Transitional: the TLS keyword arguments become one TlsConfig.
            tls=TlsConfig(root_certificates, client_certificate, client_key)
            if tls or root_certificates or client_certificate
            else None,
        )
        self._stub = pbg.StageConfigServiceStub(self._channel)

    def close(self) -> None:
        """Close the channel; open watch streams end."""
        self._channel.close()

    def __enter__(self) -> AdminClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _call(self, method: Callable[..., T], request: Any) -> T:
        try:
            return method(request, timeout=self.timeout)
        except grpc.RpcError as error:
            raise translate_rpc_error(error) from error

    # -- reads ----------------------------------------------------------------------------

    def list_configs(self) -> ConfigOverview:
        """All four stages, configured or not, with their allowed providers and cached
        models; keys masked."""
        answer = self._call(self._stub.ListConfigs, pb.ListConfigsRequest())
        return ConfigOverview(
            stages=tuple(_stage_view(s) for s in answer.stages),
            head_revision=answer.head_revision,
        )

    def list_models(self, stage: StageType | str, *, refresh: bool = False) -> ModelList:
        """The stage's cached models; ``refresh`` asks the provider first.

        Raises NotFoundError when nothing is stored for the stage.
        """
        answer = self._call(
            self._stub.ListModels,
            pb.ListModelsRequest(stage_type=stage_to_pb(stage), refresh=refresh),
        )
        return ModelList(
            models=tuple(answer.models),
            updated_at=time_from_pb(answer.updated_at, answer.HasField("updated_at")),
            selected_model=answer.selected_model,
            provider_kind=_known_provider(answer.provider_kind),
            status=status_from_pb(answer.status),
            status_reason=answer.status_reason,
        )

    def history(
        self, stage: StageType | str | None = None, *, page_size: int = 0, page_token: str = ""
    ) -> HistoryPage:
        """One page of the revision log, newest first (``stage`` None: every stage).

        ``page_size`` 0 lets the server choose (20; at most 100). An unknown
        ``page_token`` raises InvalidArgumentError (``field == "page_token"``).
        """
        request = pb.GetConfigHistoryRequest(page_size=page_size, page_token=page_token)
        if stage is not None:
            request.stage_type = stage_to_pb(stage)
        answer = self._call(self._stub.GetConfigHistory, request)
        return HistoryPage(
            entries=tuple(_history_entry(e) for e in answer.entries),
            next_page_token=answer.next_page_token,
        )

    def iter_history(
        self, stage: StageType | str | None = None, *, limit: int | None = None
    ) -> Iterator[HistoryEntry]:
        """Every history entry, newest first, across pages (at most ``limit``)."""
        token, seen = "", 0
        while True:
            page_size = min(100, limit - seen) if limit is not None else 100
            if page_size <= 0:
                return
            page = self.history(stage, page_size=page_size, page_token=token)
            for entry in page.entries:
                yield entry
                seen += 1
            token = page.next_page_token
            if not token or not page.entries:
                return

    def list_watchers(self) -> WatcherList:
        """Every connected WatchConfig stream and the revision it holds."""
        answer = self._call(self._stub.ListWatchers, pb.ListWatchersRequest())
        return WatcherList(
            watchers=tuple(_watcher(w) for w in answer.watchers),
            head_revision=answer.head_revision,
        )

    # -- writes ---------------------------------------------------------------------------

    def update_config(
        self,
        stage: StageType | str,
        provider: ProviderKind | str,
        *,
        api_key: str | None = None,
        model: str | None = None,
        options: Mapping[str, str] | None = None,
        expected_revision: int | None = None,
        validate_only: bool = False,
        comment: str = "",
    ) -> UpdateResult:
        """Store a stage's config; the server verifies the key with the provider first.

        ``api_key`` None keeps the stored key (or, for a new provider, the newest key
        saved for it); ``model`` None keeps the stored model if still offered, else the
        first offered. ``expected_revision`` makes the write conditional (0: the stage
        must not be stored yet). Raises InvalidArgumentError (``.field``),
        ConflictError (``.current_revision``), KeyRejectedError (nothing changed).
        """
        request = pb.UpdateConfigRequest(
            stage_type=stage_to_pb(stage),
            provider_kind=provider_to_pb(provider),
            options=dict(options or {}),
            validate_only=validate_only,
            comment=comment,
        )
        if api_key is not None:
            request.api_key = api_key
        if model is not None:
            request.model = model
        if expected_revision is not None:
            request.expected_revision = expected_revision
        answer = self._call(self._stub.UpdateConfig, request)
        return UpdateResult(
            config=_masked(config_from_pb(answer.config)),
            models=tuple(answer.models),
            written=answer.written,
        )

    def refresh_models(self, stage: StageType | str | None = None) -> tuple[RefreshResult, ...]:
        """Run the model sync now for one stage (or every stored stage)."""
        request = pb.RefreshModelsRequest()
        if stage is not None:
            request.stage_type = stage_to_pb(stage)
        answer = self._call(self._stub.RefreshModels, request)
        return tuple(
            RefreshResult(
                stage_type=_known_stage(r.stage_type),
                status=status_from_pb(r.status),
                status_reason=r.status_reason,
                models=tuple(r.models),
                selected_model=r.selected_model,
                replaced_model=r.replaced_model,
                revision=r.revision,
            )
            for r in answer.results
        )

    def rollback(
        self,
        stage: StageType | str,
        to_revision: int,
        *,
        expected_revision: int | None = None,
    ) -> StageConfig:
        """Write a new revision restoring ``to_revision``'s provider, key, model and
        options (re-verified with the provider); returns it, key masked."""
        request = pb.RollbackConfigRequest(
            stage_type=stage_to_pb(stage),
            to_revision=to_revision,
        )
        if expected_revision is not None:
            request.expected_revision = expected_revision
        answer = self._call(self._stub.RollbackConfig, request)
        return _masked(config_from_pb(answer.config))

    # -- the stream -----------------------------------------------------------------------

    def watch(
        self,
        stages: Iterable[StageType | str] = (),
        *,
        resume_revision: int | None = None,
        client_id: str = "",
        duration: float | None = None,
    ) -> WatchStream:
        """Open a WatchConfig stream (``stages`` empty: all), keys masked.

        The first event is a snapshot (or, with ``resume_revision``, the missed
        changes), then changes and heartbeats. ``duration`` ends the stream normally
        after that many seconds; otherwise it runs until ``cancel()``.
        """
        request = pb.WatchConfigRequest(
            stage_types=[stage_to_pb(s) for s in stages],
            client_id=client_id,
        )
        if resume_revision is not None:
            request.resume_revision = resume_revision
        call = self._stub.WatchConfig(request, timeout=duration)
        return WatchStream(call, ends_at_deadline=duration is not None)


__all__ = [
    "DEFAULT_TIMEOUT_SECONDS",
    "AdminClient",
    "ChangeEvent",
    "ConfigOverview",
    "FieldChange",
    "HeartbeatEvent",
    "HistoryEntry",
    "HistoryPage",
    "ModelList",
    "RefreshResult",
    "SnapshotEvent",
    "StageView",
    "UpdateResult",
    "WatchEvent",
    "WatchStream",
    "WatcherInfo",
    "WatcherList",
    "mask_key",
]
