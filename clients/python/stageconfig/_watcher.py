"""The watch loop: one WatchConfig stream at a time, reconnecting, failing over between
replicas and probing for a server that went away.

It runs on the client's daemon *watch* thread with the synchronous grpc API (blocking
iteration; ``call.cancel()`` from another thread ends it). grpc is imported only here
and only once the thread runs, so no grpc object exists before ``start()``.

After a stream that reached the server ends (it shut down, or dropped a slow reader)
the loop moves to the next replica after a short full-jitter backoff. When the server
is unreachable it waits for the channel to connect instead — grpc retries the
connection by itself, so a restarted server is used the moment it listens — and tries
the next replica after the connect timeout. Every stream resumes from the applied
revision. Statuses retrying cannot fix end the loop (FATAL).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from stageconfig._backoff import Backoff
from stageconfig._convert import stage_to_pb
from stageconfig._liveness import Liveness
from stageconfig._messages import MessageApplier
from stageconfig._options import TimingOptions
from stageconfig._store import SnapshotStore, StoreUpdate
from stageconfig._types import StageType
from stageconfig._validation import Gate
from stageconfig.errors import (
    RPCError,
    StageConfigError,
    StatusCode,
    UnavailableError,
    translate_rpc_error,
)
from stageconfig.tls import TlsConfig
from stageconfig_contract import __version__
from stageconfig_contract.v1 import stage_config_pb2 as pb

if TYPE_CHECKING:
    import grpc

log = logging.getLogger("stageconfig.client")

FATAL_CODES: frozenset[StatusCode] = frozenset(
    {
        StatusCode.UNAUTHENTICATED,
        StatusCode.PERMISSION_DENIED,
        # Retrying cannot fix these either: a request this server will never accept.
        StatusCode.INVALID_ARGUMENT,
        StatusCode.UNIMPLEMENTED,
    }
)
"""Statuses that end the client's attempts (state FATAL) instead of a retry."""

_CONNECT_SLICE = 0.5
"""A wait for a connection is a series of probes this long (close() cancels one)."""
_HEALTH_CHECK = "/grpc.health.v1.Health/Check"
"""Always open on the server, even with tokens: the connection probe."""
_DEFAULT_MAX_RECONNECT_BACKOFF = 2.0
"""grpc's own reconnect cap in ``_channel.DEFAULT_OPTIONS``."""


def _identity_bytes(data: bytes) -> bytes:
    return data


class Watcher:
    """Keeps one WatchConfig stream open to one of ``targets`` and applies what it
    delivers to ``store``.

    ``refresh_state`` is called whenever the state may have moved (a message, an error);
    ``on_update`` with every store update that moved something.
    """

    def __init__(
        self,
        targets: tuple[str, ...],
        *,
        token: str | None,
        tls: TlsConfig | None,
        channel_options: Sequence[tuple[str, Any]],
        timing: TimingOptions,
        stages: frozenset[StageType],
        watch_all: bool,
        client_id: Callable[[], str],
        store: SnapshotStore,
        gate: Gate,
        liveness: Liveness,
        refresh_state: Callable[[], None],
        on_update: Callable[[StoreUpdate], None],
    ) -> None:
        self._targets = targets
        self._target_index = 0
        self._token = token
        self._tls = tls
        self._channel_options = tuple(channel_options)
        self._timing = timing
        self._connect_timeout = timing.connect_timeout_for(len(targets))
        self._stages = stages
        self._watch_all = watch_all
        self._client_id = client_id
        self._store = store
        self._applier = MessageApplier(store, gate)
        self._liveness = liveness
        self._refresh_state = refresh_state
        self._on_update = on_update
        self.resumable = False
        """Whether the held revision is one a stream may resume from."""
        self._init_process_state()

    def _init_process_state(self) -> None:
        self._lock = threading.Lock()
        self._channel: grpc.Channel | None = None
        self._call: Any = None
        self.fatal: StageConfigError | None = None
        """The error that ended the loop for good (FATAL), or None."""
        self.last_error: StageConfigError | None = None
        """The last connection error, or None."""

    def reset_after_fork(self) -> tuple[object, object]:
        """In a forked child: forget the parent's grpc objects (returned, so the caller
        keeps them referenced and they are never collected, i.e. never closed, here)."""
        abandoned = (self._channel, self._call)
        self._init_process_state()
        return abandoned

    @property
    def target(self) -> str:
        """The server watched now."""
        return self._targets[self._target_index]

    # -- the loop ----------------------------------------------------------------------------

    def run(self, stop: threading.Event) -> None:
        """The watch thread: stream, reconnect and fail over until ``stop`` is set or
        the server refuses the client for good."""
        backoff = Backoff(self._timing.backoff_initial_seconds, self._timing.backoff_max_seconds)
        while not stop.is_set():
            error, delivered = self._stream_once(stop, backoff)
            self._liveness.stream_closed(time.monotonic())
            if stop.is_set():
                return
            if isinstance(error, RPCError) and error.code in FATAL_CODES:
                self.fatal = error
                log.error(
                    "stageconfig server %s refused this client (%s); not retrying",
                    self.target,
                    error,
                )
                self._refresh_state()
                return
            self.last_error = error
            self._refresh_state()
            self._next_target()
            if delivered:
                # The server answered and then ended or failed the stream (shutting
                # down, or dropped us as too slow): move on after a short jittered wait.
                delay = backoff.next_delay()
                log.info(
                    "stageconfig watch of %s interrupted (%s); reconnecting in %.2f s",
                    self._previous_target(),
                    error,
                    delay,
                )
                if stop.wait(delay):
                    return
                continue
            # The server is unreachable. Waiting for the channel to connect *is* the
            # backoff: grpc retries the connection on its own, so a restarted server is
            # used the moment it listens, instead of after fail-fast retries that let
            # both our backoff and grpc's escalate (seconds late per watcher, and a
            # storm of attempts from a fleet — scripts/bench's reconnect storm).
            log.info(
                "stageconfig server %s unreachable (%s); waiting for %s",
                self._previous_target(),
                error,
                self.target,
            )
            self._await_connection(stop)

    def _stream_once(
        self, stop: threading.Event, backoff: Backoff
    ) -> tuple[StageConfigError, bool]:
        """Run one WatchConfig stream to its end: the error that ended it, and whether
        it delivered anything."""
        import grpc  # here, not at import: no grpc object may exist before start()

        from stageconfig_contract.v1 import stage_config_pb2_grpc as pbg

        delivered = False
        try:
            channel = self._ensure_channel()
            call: Any = pbg.StageConfigServiceStub(channel).WatchConfig(self._request())
            with self._lock:
                self._call = call
                self._liveness.stream_opened(time.monotonic())
            if stop.is_set():  # close() ran before the call was visible to it
                call.cancel()
            resumed = self._resume_revision() is not None
            for message in call:
                delivered = True
                self._handle(message, resumed, backoff)
            ended = UnavailableError(StatusCode.UNAVAILABLE, f"{self.target} ended the stream")
            return ended, delivered
        except grpc.RpcError as exc:
            if not callable(getattr(exc, "code", None)):
                return UnavailableError(StatusCode.UNAVAILABLE, str(exc)), delivered
            return translate_rpc_error(exc), delivered
        except Exception as exc:  # a bug or an unreadable message: retried like an outage
            if not stop.is_set():
                log.exception("stageconfig watch of %s failed", self.target)
            return StageConfigError(f"watch failed: {exc!r}"), delivered
        finally:
            with self._lock:
                self._call = None

    def _handle(self, message: pb.WatchConfigResponse, resumed: bool, backoff: Backoff) -> None:
        kind = message.WhichOneof("event")
        first = self._liveness.received(
            time.monotonic(), heartbeat=kind == "heartbeat", first_of_resume=resumed
        )
        if first:
            backoff.reset()  # the server answered: the next reconnect is quick
        update = self._applier.apply(message, self.target)
        if kind == "snapshot":
            self.resumable = True
        self._refresh_state()
        if update is not None:
            self._on_update(update)

    # -- connections -------------------------------------------------------------------------

    def _await_connection(self, stop: threading.Event) -> bool:
        """Wait until the current target accepts calls, at most the connect timeout.

        A health probe with ``wait_for_ready`` waits for the channel to connect while
        grpc retries the connection by itself; it runs in short deadline-bounded slices,
        and closing the channel (``close()``) cancels it at once. True when the server
        answered (any answer: it is there).
        """
        import grpc

        channel = self._ensure_channel()
        probe = channel.unary_unary(
            _HEALTH_CHECK,
            request_serializer=_identity_bytes,
            response_deserializer=_identity_bytes,
        )
        deadline = time.monotonic() + self._connect_timeout
        while not stop.is_set():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            try:
                # An empty HealthCheckRequest (service "") is zero bytes on the wire.
                probe(b"", timeout=min(_CONNECT_SLICE, remaining), wait_for_ready=True)
            except grpc.RpcError as exc:
                code = exc.code() if callable(getattr(exc, "code", None)) else None
                if code is grpc.StatusCode.DEADLINE_EXCEEDED:
                    continue  # not connected yet
                if code in (grpc.StatusCode.CANCELLED, grpc.StatusCode.UNAVAILABLE):
                    return False  # closed, or refused while shutting down
            return True
        return False

    def _next_target(self) -> None:
        """Move to the next replica (if there are several): the stream failed or ended,
        e.g. the replica shut down. The next stream resumes from the applied revision."""
        if len(self._targets) < 2:
            return
        with self._lock:
            channel, self._channel = self._channel, None
            self._target_index = (self._target_index + 1) % len(self._targets)
        if channel is not None:
            channel.close()

    def _previous_target(self) -> str:
        return self._targets[(self._target_index - 1) % len(self._targets)]

    def channel(self) -> grpc.Channel:
        """The channel to the server watched now (the reporter's unary calls share it)."""
        return self._ensure_channel()

    def _ensure_channel(self) -> grpc.Channel:
        from stageconfig._channel import create_channel

        with self._lock:
            if self._channel is None:
                self._channel = create_channel(
                    self.target,
                    token=self._token,
                    tls=self._tls,
                    options=[*self._reconnect_options(), *self._channel_options],
                )
            return self._channel

    def _reconnect_options(self) -> list[tuple[str, Any]]:
        # While a server is away the channel's own retries decide how late its return is
        # noticed. They must not outlast our backoff (or a call made after the server
        # returned still fails fast for seconds), nor a quarter of the stale grace (or a
        # server back within the grace is noticed after it, and a short outage flaps to
        # STALE).
        cap = min(
            _DEFAULT_MAX_RECONNECT_BACKOFF,
            self._timing.backoff_max_seconds,
            self._timing.stale_grace_seconds / 4,
        )
        if cap >= _DEFAULT_MAX_RECONNECT_BACKOFF:
            return []
        return [("grpc.max_reconnect_backoff_ms", max(1, int(cap * 1000)))]

    def _resume_revision(self) -> int | None:
        current = self._store.current
        if self.resumable and current is not None and current.revision > 0:
            return current.revision
        return None

    def _request(self) -> pb.WatchConfigRequest:
        request = pb.WatchConfigRequest(client_id=self._client_id(), client_version=__version__)
        if not self._watch_all:  # an empty list means every stage
            request.stage_types.extend(stage_to_pb(s) for s in sorted(self._stages))
        resume = self._resume_revision()
        if resume is not None:
            request.resume_revision = resume
        return request

    # -- called from other threads -----------------------------------------------------------

    def cancel_silent_call(self) -> None:
        """Cancel a stream that has been silent for the staleness bound (a half-open
        connection, a frozen server): the loop then reconnects."""
        with self._lock:
            call = self._call
            if call is None or not self._liveness.call_went_silent(time.monotonic()):
                return
        log.warning(
            "stageconfig stream of %s silent for over %.1f s; reconnecting",
            self.target,
            self._liveness.stale_after,
        )
        call.cancel()

    def cancel(self) -> None:
        """Cancel the open stream (the loop ends there once ``stop`` is set)."""
        with self._lock:
            call = self._call
        if call is not None:
            call.cancel()

    def close_channel(self) -> None:
        """Close the channel, once the loop has ended."""
        with self._lock:
            channel = self._channel  # kept: a closed channel fails any late call at once
        if channel is not None:
            channel.close()
