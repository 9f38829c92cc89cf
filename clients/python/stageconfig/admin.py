"""``AdminClient``: a typed, synchronous client for the admin RPCs.

What ``stageconfigctl`` and the web page are built on. Every answer is a frozen dataclass
(``_admin_types``, re-exported here; proto types stop in ``_admin_convert``), every
failure an exception from ``stageconfig.errors`` (never ``grpc.RpcError``), and every key
it returns is masked — even on a development server without tokens, where the anonymous
caller could receive plaintext keys::

    with AdminClient("127.0.0.1:50051", token=admin_token) as admin:
        poem = admin.list_configs().stage(StageType.POEM)
        admin.update_config(
            StageType.POEM, ProviderKind.OPENAI, model="gpt-4o",
            expected_revision=poem.revision,   # ConflictError if someone saved meanwhile
        )
        for event in admin.watch([StageType.POEM], duration=60):
            print(event)

A newer server never makes a call fail with a value this client does not know: statuses,
causes, sources and reasons read UNSPECIFIED; a provider kind is kept as its number
(``StageView``/``ModelList.unknown_provider_kind``, shown ``UNKNOWN(99)``); whatever
belongs to a stage this client cannot name (a stage view, a history entry, a refresh
result, a watched config) is left out, and so is a watched config whose provider kind it
cannot name — with one WARNING per unknown value on the ``stageconfig.admin`` logger.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any, TypeVar

import grpc

from stageconfig._admin_convert import (
    fleet_status_from_pb,
    history_page_from_pb,
    masked_config_from_pb,
    model_list_from_pb,
    overview_from_pb,
    refresh_result_from_pb,
    representable,
    update_result_from_pb,
    watchers_from_pb,
)
from stageconfig._admin_rollout import (
    Rollout,
    RolloutCalls,
    RolloutPolicy,
    RolloutResult,
    RolloutSide,
    RolloutState,
    update_request,
)
from stageconfig._admin_routes import (
    RouteHealth,
    RouteReport,
    RouteSpec,
    RouteView,
    parse_route_spec,
    route_spec_text,
)
from stageconfig._admin_types import (
    ChangeEvent,
    ConfigOverview,
    FieldChange,
    FleetClient,
    FleetStatus,
    HeartbeatEvent,
    HistoryEntry,
    HistoryPage,
    ModelList,
    RefreshResult,
    RevisionFleetStatus,
    SnapshotEvent,
    StageFleetStatus,
    StageReport,
    StageView,
    TaskOutcomes,
    UpdateResult,
    WatcherInfo,
    WatcherList,
    WatchEvent,
)
from stageconfig._admin_watch import LeftOutWarnings, WatchStream
from stageconfig._channel import create_channel
from stageconfig._convert import stage_to_pb
from stageconfig._types import ProviderKind, StageConfig, StageType
from stageconfig.errors import translate_rpc_error
from stageconfig.tls import TlsConfig
from stageconfig_contract.facts import mask_key
from stageconfig_contract.v1 import stage_config_pb2 as pb
from stageconfig_contract.v1 import stage_config_pb2_grpc as pbg

T = TypeVar("T")

DEFAULT_TIMEOUT_SECONDS = 30.0
"""Deadline of one unary call: above the server's provider timeout (10 s by default),
which bounds UpdateConfig, RollbackConfig and refreshes."""

DEFAULT_FLEET_WINDOW = 900
"""The window ``fleet_status`` counts task outcomes over by default: 15 minutes, the
server's own default."""


class AdminClient(RolloutCalls):
    """A synchronous client for the admin RPCs of one stageconfig server.

    ``token`` is an admin token (``STAGECONFIG_TOKENS`` entry with role ``admin``); omit
    it for a development server without tokens. ``tls`` turns on TLS (``TlsConfig()``:
    the system roots; a client certificate in it means mTLS); None is plaintext.
    ``timeout`` bounds each unary call. Thread-safe; close it (or use ``with``) to
    release the channel. Rollouts: ``start_rollout``, ``promote_rollout`` and
    ``abort_rollout`` (``RolloutCalls``); a running one shows on ``StageView.rollout``
    and ``StageFleetStatus.rollout``.
    """

    _masked = staticmethod(masked_config_from_pb)

    def __init__(
        self,
        target: str,
        token: str | None = None,
        *,
        tls: TlsConfig | None = None,
        timeout: float = DEFAULT_TIMEOUT_SECONDS,
    ) -> None:
        self.target = target
        self.timeout = timeout
        self._left_out = LeftOutWarnings()
        self._channel = create_channel(target, token=token, tls=tls)
        self._stub = pbg.StageConfigServiceStub(self._channel)

    def close(self) -> None:
        """Close the channel; open watch streams end."""
        self._channel.close()

    def __enter__(self) -> AdminClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _call(self, method: Callable[..., T], request: Any) -> T:
        try:
            return method(request, timeout=self.timeout)
        except grpc.RpcError as error:
            raise translate_rpc_error(error) from error

    def _current_provider(self, stage: StageType | str) -> ProviderKind:
        """The stage's stored provider (ValueError when none is stored)."""
        config = self.list_configs().stage(stage).config
        if config is None:
            raise ValueError(f"nothing is stored for {StageType(stage).value}: name a provider")
        return config.provider_kind

    # -- reads ----------------------------------------------------------------------------

    def list_configs(self) -> ConfigOverview:
        """All four stages, configured or not, with their allowed providers and cached
        models; keys masked."""
        answer = self._call(self._stub.ListConfigs, pb.ListConfigsRequest())
        overview, left_out = overview_from_pb(answer)
        self._left_out(left_out)
        return overview

    def list_models(self, stage: StageType | str, *, refresh: bool = False) -> ModelList:
        """The stage's cached models; ``refresh`` asks the provider first.

        Raises NotFoundError when nothing is stored for the stage.
        """
        answer = self._call(
            self._stub.ListModels,
            pb.ListModelsRequest(stage_type=stage_to_pb(stage), refresh=refresh),
        )
        return model_list_from_pb(answer)

    def history(
        self, stage: StageType | str | None = None, *, page_size: int = 0, page_token: str = ""
    ) -> HistoryPage:
        """One page of the revision log, newest first (``stage`` None: every stage).

        ``page_size`` 0 lets the server choose (20; at most 100). An unknown
        ``page_token`` raises InvalidArgumentError (``field == "page_token"``).
        """
        return self._history_page(stage, page_size, page_token)[0]

    def _history_page(
        self, stage: StageType | str | None, page_size: int, page_token: str
    ) -> tuple[HistoryPage, int]:
        """A page and how many entries the server sent (left-out ones included)."""
        request = pb.GetConfigHistoryRequest(page_size=page_size, page_token=page_token)
        if stage is not None:
            request.stage_type = stage_to_pb(stage)
        answer = self._call(self._stub.GetConfigHistory, request)
        page, left_out = history_page_from_pb(answer)
        self._left_out(left_out)
        return page, len(answer.entries)

    def iter_history(
        self, stage: StageType | str | None = None, *, limit: int | None = None
    ) -> Iterator[HistoryEntry]:
        """Every history entry, newest first, across pages (at most ``limit``)."""
        token, seen = "", 0
        while True:
            page_size = min(100, limit - seen) if limit is not None else 100
            if page_size <= 0:
                return
            page, sent = self._history_page(stage, page_size, token)
            for entry in page.entries:
                yield entry
                seen += 1
            token = page.next_page_token
            # A page may hold only left-out entries; an empty one is the end whatever
            # the token says.
            if not token or not sent:
                return

    def list_watchers(self) -> WatcherList:
        """Every connected WatchConfig stream, the revision it was sent and, from the
        client's reports, the revision it applied, its newest refusal and when it last
        reported."""
        return watchers_from_pb(self._call(self._stub.ListWatchers, pb.ListWatchersRequest()))

    def fleet_status(
        self, stage: StageType | str | None = None, window_seconds: int = DEFAULT_FLEET_WINDOW
    ) -> FleetStatus:
        """What the fleet runs: per stage, the revisions in use with how many clients
        hold each, the NACKs with their reasons and the task outcomes over the last
        ``window_seconds``, and every client that has reported — those that stopped
        reporting marked ``silent``.

        ``stage`` None: every stage. A window the server does not accept raises
        InvalidArgumentError (``field == "window_seconds"``); one below 1 second raises
        ValueError before any call (on the wire 0 would mean the server's default).
        """
        if window_seconds < 1:
            raise ValueError(f"window_seconds must be at least 1, got {window_seconds}")
        request = pb.GetFleetStatusRequest(window_seconds=window_seconds)
        if stage is not None:
            request.stage_type = stage_to_pb(stage)
        status, left_out = fleet_status_from_pb(self._call(self._stub.GetFleetStatus, request))
        self._left_out(left_out)
        return status

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
        allow_unverified: bool = False,
        fallbacks: Sequence[RouteSpec] | None = None,
        clear_fallbacks: bool = False,
    ) -> UpdateResult:
        """Store a stage's config; the server verifies the key with the provider first.

        ``api_key`` None keeps the stored key (or, for a new provider, the newest key
        saved for it); ``model`` None keeps the stored model if still offered, else the
        first offered. ``expected_revision`` makes the write conditional (0: the stage
        must not be stored yet). ``allow_unverified`` stores a key the provider could
        not verify even over a working config (otherwise refused). ``fallbacks`` sets
        the whole ordered list of fallback routes (``RouteSpec``; at most 8); None or an
        empty list keeps the stored routes, ``clear_fallbacks`` removes them. Raises
        InvalidArgumentError (``.field``), ConflictError (``.current_revision``),
        KeyRejectedError (nothing changed).
        """
        request = update_request(
            stage,
            provider,
            api_key=api_key,
            model=model,
            options=options,
            expected_revision=expected_revision,
            comment=comment,
            fallbacks=fallbacks,
            clear_fallbacks=clear_fallbacks,
            validate_only=validate_only,
            allow_unverified=allow_unverified,
        )
        return update_result_from_pb(self._call(self._stub.UpdateConfig, request))

    def refresh_models(self, stage: StageType | str | None = None) -> tuple[RefreshResult, ...]:
        """Run the model sync now for one stage (or every stored stage)."""
        request = pb.RefreshModelsRequest()
        if stage is not None:
            request.stage_type = stage_to_pb(stage)
        answer = self._call(self._stub.RefreshModels, request)
        results, left_out = representable(answer.results, refresh_result_from_pb)
        self._left_out(left_out)
        return results

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
        return masked_config_from_pb(answer.config)

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
        return WatchStream(call, ends_at_deadline=duration is not None, left_out=self._left_out)


__all__ = [
    "DEFAULT_FLEET_WINDOW",
    "DEFAULT_TIMEOUT_SECONDS",
    "AdminClient",
    "ChangeEvent",
    "ConfigOverview",
    "FieldChange",
    "FleetClient",
    "FleetStatus",
    "HeartbeatEvent",
    "HistoryEntry",
    "HistoryPage",
    "ModelList",
    "RefreshResult",
    "RevisionFleetStatus",
    "Rollout",
    "RolloutPolicy",
    "RolloutResult",
    "RolloutSide",
    "RolloutState",
    "RouteHealth",
    "RouteReport",
    "RouteSpec",
    "RouteView",
    "SnapshotEvent",
    "StageFleetStatus",
    "StageReport",
    "StageView",
    "TaskOutcomes",
    "UpdateResult",
    "WatchEvent",
    "WatchStream",
    "WatcherInfo",
    "WatcherList",
    "mask_key",
    "parse_route_spec",
    "route_spec_text",
]
