"""The StageConfigService servicer: proto in, a call into the service layer, proto out.

No business rule lives here, and no conversion either: requests become domain calls
and answers become messages through ``rpc/convert.py``. Errors from the service map
to gRPC statuses through the one table in ``rpc/status.py``.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar, cast

import grpc

from stageconfig_contract.v1 import stage_config_pb2 as pb
from stageconfig_server.broadcast import Broadcaster
from stageconfig_server.domain import StageConfig, StageType
from stageconfig_server.errors import StageConfigError
from stageconfig_server.fleet_aggregate import ClientView
from stageconfig_server.fleet_service import FleetService
from stageconfig_server.rollout_types import RolloutState
from stageconfig_server.rpc import convert, fleet_convert, rollout_convert
from stageconfig_server.rpc.identity import ANONYMOUS, Caller, Role
from stageconfig_server.rpc.refusals import RefusalLog
from stageconfig_server.rpc.status import internal_status, status_for
from stageconfig_server.rpc.watcher_convert import watcher_to_pb
from stageconfig_server.service import ConfigService

log = logging.getLogger(__name__)
"""Rate-limits the slow-watcher drop line (the drops are counted by the broadcaster)."""

T = TypeVar("T")

REFRESH_METADATA = "stageconfig-refresh"
"""Trailing metadata of a ListModels refresh=true answer: refreshed, joined (shared a
refresh in flight), cached (the provider was asked moments ago) or cached-for-workers."""

CallerResolver = Callable[[grpc.aio.ServicerContext[Any, Any]], Caller]


def _anonymous(_context: grpc.aio.ServicerContext[Any, Any]) -> Caller:
    return ANONYMOUS


async def abort_with(context: grpc.aio.ServicerContext[Any, Any], status: grpc.Status) -> None:
    """Abort the call with a rich status (grpc-stubs lacks aio's abort_with_status)."""
    await cast(Any, context).abort_with_status(status)


async def _answer(context: grpc.aio.ServicerContext[Any, Any], call: Awaitable[T]) -> T:
    """Await ``call``; turn service errors into their status, and bugs into INTERNAL."""
    try:
        return await call
    except StageConfigError as error:
        await abort_with(context, status_for(error))
    except (asyncio.CancelledError, grpc.aio.AbortError):
        raise
    except Exception:
        log.exception("unexpected error in %s", type(call).__name__)
        await abort_with(context, internal_status())
    raise AssertionError("unreachable")  # abort_with_status always raises


class StageConfigServicer:
    """Adapts the gRPC API to ConfigService and the Broadcaster."""

    def __init__(
        self,
        service: ConfigService,
        broadcaster: Broadcaster,
        caller_of: CallerResolver = _anonymous,
        *,
        fleet: FleetService | None = None,
        refusals: RefusalLog | None = None,
    ) -> None:
        self._service = service
        # The server's refusal log (per server, not per process): its counts are the
        # server's stageconfig_refusals_total, and its rate limit belongs to this server.
        self._refusals = refusals if refusals is not None else RefusalLog(log)
        self._broadcaster = broadcaster
        self._caller_of = caller_of
        self._fleet = fleet
        self._active_encoded: dict[tuple[StageType, bool], tuple[StageConfig, bytes]] = {}

    async def GetActiveConfig(  # noqa: N802 - gRPC method names are fixed by the proto
        self, request: pb.GetActiveConfigRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> bytes:
        """A stage's config; the key is plaintext for workers.

        Returns the serialized GetActiveConfigResponse (registered with an identity
        serializer in ``server.py``), encoded once per config and role.
        """
        caller = self._caller_of(context)

        async def run() -> bytes:
            stage = convert.stage_from_pb(request.stage_type)
            config = self._service.get_active(stage, request.client_id)
            return self._encoded_active(config, caller.reveals_keys)

        return await _answer(context, run())

    def _encoded_active(self, config: StageConfig, reveal_key: bool) -> bytes:
        # The service's view replaces a stage's config object on every change (a new
        # revision or a refreshed cache time), so object identity is the invalidation:
        # no stale answer, and a fallback config (a new object per call) is just encoded.
        key = (config.stage_type, reveal_key)
        cached = self._active_encoded.get(key)
        if cached is not None and cached[0] is config:
            return cached[1]
        encoded = pb.GetActiveConfigResponse(
            config=convert.config_to_pb(config, reveal_key=reveal_key)
        ).SerializeToString()
        self._active_encoded[key] = (config, encoded)
        return encoded

    async def UpdateConfig(  # noqa: N802
        self, request: pb.UpdateConfigRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.UpdateConfigResponse:
        """Validate, verify and store a stage's config; the answer masks the key."""
        caller = self._caller_of(context)

        async def run() -> pb.UpdateConfigResponse:
            update = dataclasses.replace(
                convert.update_request_from_pb(request),
                rollout=rollout_convert.spec_from_pb(request),
            )
            result = await self._service.update(update, actor=caller.name)
            response = pb.UpdateConfigResponse(
                config=convert.config_to_pb(result.config, reveal_key=False),
                models=list(result.models),
                written=result.written,
            )
            if result.rollout is not None:
                view = await self._service.rollouts.view_of(result.rollout)
                response.rollout.CopyFrom(rollout_convert.rollout_to_pb(view))
            return response

        return await _answer(context, run())

    async def ListModels(  # noqa: N802
        self, request: pb.ListModelsRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.ListModelsResponse:
        """The stage's cached models (refresh=true asks the provider first).

        Refreshes are coalesced and rate-limited per stage, and only admins may force
        one (a worker's refresh=true is answered from the cache: workers need the
        selected model, which the cache always has, not a call spending the stored
        key). The trailing metadata ``REFRESH_METADATA`` says how a refresh=true call
        was served (``refresh.Served``).
        """
        caller = self._caller_of(context)

        async def run() -> pb.ListModelsResponse:
            stage = convert.stage_from_pb(request.stage_type)
            view, served = await self._service.list_models_served(
                stage, refresh=request.refresh, may_refresh=Role.ADMIN in caller.roles
            )
            if served is not None:
                context.set_trailing_metadata(((REFRESH_METADATA, served.value),))
            return convert.models_to_pb(view)

        return await _answer(context, run())

    async def ListConfigs(  # noqa: N802
        self, request: pb.ListConfigsRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.ListConfigsResponse:
        """All four stages, keys masked."""

        async def run() -> pb.ListConfigsResponse:
            stages = []
            for view in self._service.list_configs():
                message = convert.stage_view_to_pb(view)
                if view.rollout is not None:
                    rollout = await self._service.rollouts.view_of(view.rollout)
                    message.rollout.CopyFrom(rollout_convert.rollout_to_pb(rollout))
                stages.append(message)
            return pb.ListConfigsResponse(stages=stages, head_revision=self._service.head_revision)

        return await _answer(context, run())

    async def RefreshModels(  # noqa: N802
        self, request: pb.RefreshModelsRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.RefreshModelsResponse:
        """Run the model sync now for one stage or all."""

        async def run() -> pb.RefreshModelsResponse:
            stage = convert.optional_stage_from_pb(request.stage_type)
            outcomes = await self._service.refresh(stage)
            return pb.RefreshModelsResponse(results=[convert.refresh_to_pb(o) for o in outcomes])

        return await _answer(context, run())

    async def GetConfigHistory(  # noqa: N802
        self, request: pb.GetConfigHistoryRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.GetConfigHistoryResponse:
        """A page of the revision log, newest first, keys masked."""

        async def run() -> pb.GetConfigHistoryResponse:
            stage = convert.optional_stage_from_pb(request.stage_type)
            page = await self._service.history(stage, request.page_size, request.page_token)
            return pb.GetConfigHistoryResponse(
                entries=[convert.history_entry_to_pb(e) for e in page.entries],
                next_page_token=page.next_page_token,
            )

        return await _answer(context, run())

    async def RollbackConfig(  # noqa: N802
        self, request: pb.RollbackConfigRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.RollbackConfigResponse:
        """Restore an earlier revision as a new one."""
        caller = self._caller_of(context)

        async def run() -> pb.RollbackConfigResponse:
            config = await self._service.rollback(
                convert.stage_from_pb(request.stage_type),
                request.to_revision,
                request.expected_revision if request.HasField("expected_revision") else None,
                actor=caller.name,
            )
            return pb.RollbackConfigResponse(config=convert.config_to_pb(config, reveal_key=False))

        return await _answer(context, run())

    async def ListWatchers(  # noqa: N802
        self, request: pb.ListWatchersRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.ListWatchersResponse:
        """Every connected WatchConfig stream, with what its client last reported."""
        reports = await _answer(context, self._reports_of_watchers())
        watchers = [
            watcher_to_pb(w, self._service.running_rollout, reports.get(w.client_id))
            for w in sorted(self._broadcaster.watchers, key=lambda w: w.connected_since)
        ]
        return pb.ListWatchersResponse(watchers=watchers, head_revision=self._service.head_revision)

    async def _reports_of_watchers(self) -> dict[str, ClientView]:
        """The fleet reports of the connected watchers' client ids (issue 14)."""
        if self._fleet is None:
            return {}
        return await self._fleet.client_views({w.client_id for w in self._broadcaster.watchers})

    async def ReportStatus(  # noqa: N802
        self, request: pb.ReportStatusRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.ReportStatusResponse:
        """A worker's report (and a host agent's processes' reports, in one
        transaction): stored once per (client_id, sequence)."""
        fleet = await self._fleet_or_abort(context)

        async def run() -> pb.ReportStatusResponse:
            own, processes = fleet_convert.batch_from_pb(request)
            counted, each = await fleet.report_batch(own, processes)
            return pb.ReportStatusResponse(
                duplicate=own is not None and not counted,
                process_duplicates=[not c for c in each],
            )

        return await _answer(context, run())

    async def GetFleetStatus(  # noqa: N802
        self, request: pb.GetFleetStatusRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.GetFleetStatusResponse:
        """The fleet's reports per stage and revision over a window."""
        fleet = await self._fleet_or_abort(context)

        async def run() -> pb.GetFleetStatusResponse:
            stage = convert.optional_stage_from_pb(request.stage_type)
            status = await fleet.status(stage, request.window_seconds)
            response = fleet_convert.fleet_status_to_pb(status)
            for message in response.stages:
                view = await self._service.rollout_view(convert.stage_from_pb(message.stage_type))
                if view is not None:
                    message.rollout.CopyFrom(rollout_convert.rollout_to_pb(view))
            return response

        return await _answer(context, run())

    async def PromoteRollout(  # noqa: N802
        self, request: pb.PromoteRolloutRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.PromoteRolloutResponse:
        """Make a running rollout's candidate the config for everyone."""
        actor = self._caller_of(context).name
        config, rollout = await _answer(
            context, rollout_convert.end(self._service, request, RolloutState.PROMOTED, actor)
        )
        return pb.PromoteRolloutResponse(config=config, rollout=rollout)

    async def AbortRollout(  # noqa: N802
        self, request: pb.AbortRolloutRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.AbortRolloutResponse:
        """Return a running rollout's cohort to the stable config."""
        actor = self._caller_of(context).name
        config, rollout = await _answer(
            context, rollout_convert.end(self._service, request, RolloutState.ABORTED, actor)
        )
        return pb.AbortRolloutResponse(config=config, rollout=rollout)

    async def _fleet_or_abort(self, context: grpc.aio.ServicerContext[Any, Any]) -> FleetService:
        if self._fleet is None:
            await context.abort(grpc.StatusCode.UNIMPLEMENTED, "fleet reports are not served here")
            raise AssertionError("unreachable")
        return self._fleet

    async def WatchConfig(  # noqa: N802
        self, request: pb.WatchConfigRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> None:
        """Snapshot (or missed changes), then changes and heartbeats, as pre-encoded bytes.

        Registered with an identity serializer (``server.py``): each change is encoded
        once for all watchers by the broadcaster. Written with ``context.write`` (not
        yield) so each write can be bounded by the broadcaster's send timeout.
        """
        caller = self._caller_of(context)
        try:
            watch = convert.watch_request_from_pb(request)
        except StageConfigError as error:
            await abort_with(context, status_for(error))
            return
        # Initial metadata on its own, before the first message: if that message then
        # stalls behind the client's flow-control window, the drop below sends only a
        # status. (Left to the first write, grpc.aio would send the metadata again with
        # the status, and core refuses that batch: GRPC_CALL_ERROR_TOO_MANY_OPERATIONS,
        # an ERROR traceback, and no status at all.)
        await context.send_initial_metadata(())
        stream = self._broadcaster.watch(
            stages=watch.stages,
            resume_revision=watch.resume_revision,
            client_id=watch.client_id or context.peer(),
            peer=context.peer(),
            actor=caller.name,
            reveal_keys=caller.reveals_keys,
            client_version=watch.client_version,
            cohort_id=watch.client_id,
        )
        timeout = self._broadcaster.send_timeout
        # aclosing: the watcher is unregistered at once however the call ends (client
        # gone, write timeout, server stop), not whenever the generator is collected.
        async with contextlib.aclosing(stream):
            async for message in stream:
                try:
                    # asyncio.timeout, not wait_for: no extra Task (and event-loop round
                    # trip) per message — the fan-out's hot path (py-spy, scripts/bench).
                    async with asyncio.timeout(timeout):
                        await context.write(message)
                except TimeoutError:
                    break
            else:
                return
        # A write did not complete in time: the watcher is already unregistered (no more
        # memory held for it but the one stalled message); tell the client to resume.
        self._broadcaster.record_drop()
        self._refusals.refused(
            "watcher_dropped",
            logging.WARNING,
            "dropping watcher %r (%s): a write took over %g s; it will resume",
            watch.client_id,
            context.peer(),
            timeout,
        )
        # grpc.aio cannot withdraw the stalled write, so the status queues behind it:
        # the client reads it right after the messages already sent (a reader that
        # resumes gets UNAVAILABLE at once). Waiting for it is bounded; a client that
        # never reads again keeps only this call until it disconnects or the
        # connection reaches STAGECONFIG_MAX_CONNECTION_AGE_SECONDS (+ grace).
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(
                context.abort(
                    grpc.StatusCode.UNAVAILABLE, "watcher too slow; reconnect and resume"
                ),
                timeout,
            )
