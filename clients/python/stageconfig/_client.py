"""``ConfigClient``: a hot, in-memory copy of every stage's config, kept current by the
server's WatchConfig stream.

Threads: a daemon *watch* thread runs the stream on the synchronous grpc API (blocking
iteration; ``call.cancel()`` from another thread ends it), and a daemon *watchdog*
thread turns silence into STALE and cancels a stream that has gone quiet so it is
re-established. Every wait is on a ``threading.Event`` or the state ``Condition``, so
``close()`` interrupts all of them at once.

Fork safety: no grpc object exists before ``start()`` (grpc itself is imported lazily
by the watch thread). After ``fork()`` the child resets its locks, abandons what the
parent had open (grpc objects created before a fork must not be used or closed in the
child), keeps the config it inherited, and starts a new channel and threads lazily on
its next call — so a client created (or even started) before Celery's prefork pool
forks still works in every child. Creating the client only after the fork, as
``stageconfig.contrib.celery`` does, needs no grpc fork support at all.
"""

from __future__ import annotations

import logging
import math
import os
import socket
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime
from types import TracebackType
from typing import TYPE_CHECKING, Any

from stageconfig._backoff import Backoff
from stageconfig._cache_file import CACHE_KEY_ENV, CachedState, CacheFile
from stageconfig._convert import config_from_pb, stage_to_pb
from stageconfig._events import ClientState, ConfigChangeEvent, StateChange
from stageconfig._store import ConfigSnapshot, SnapshotSource, SnapshotStore, StoreUpdate
from stageconfig._types import StageConfig, StageType
from stageconfig.errors import (
    CacheFileError,
    ClientClosedError,
    NotReadyError,
    RPCError,
    StageConfigError,
    StageNotConfiguredError,
    StatusCode,
    UnavailableError,
    translate_rpc_error,
)
from stageconfig.tls import TlsConfig
from stageconfig_contract.v1 import stage_config_pb2 as pb

if TYPE_CHECKING:
    import grpc

log = logging.getLogger("stageconfig.client")

DEFAULT_HEARTBEAT_SECONDS = 10.0
"""The server's default heartbeat period; assumed until the stream shows the real one."""

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

_MIN_LEARNED_PERIOD = 0.1
_MAX_LEARNED_PERIOD = 600.0
_WATCHDOG_IDLE_TICK = 1.0
_CONNECT_SLICE = 0.5
"""A wait for a connection is a series of probes this long (close() cancels one)."""
_HEALTH_CHECK = "/grpc.health.v1.Health/Check"
"""Always open on the server, even with tokens: the connection probe."""


def _identity_bytes(data: bytes) -> bytes:
    return data


DEFAULT_CONNECT_TIMEOUT_SECONDS = 30.0
"""How long one server may stay unreachable before the client tries the next target
(and, with one target, how often it says so in the log)."""
DEFAULT_FAILOVER_CONNECT_TIMEOUT_SECONDS = 3.0
"""The same bound when several targets are given: leave a dead replica quickly."""
_JOIN_SECONDS = 5.0

ChangeListener = Callable[[ConfigChangeEvent], None]
StateListener = Callable[[StateChange], None]

_LIVE_CLIENTS: weakref.WeakSet[ConfigClient] = weakref.WeakSet()
_FORK_ORPHANS: list[object] = []
"""grpc objects a forked child inherited: kept referenced so they are never collected
(and so never closed) in the child, where touching them is undefined."""


def _reset_clients_in_child() -> None:
    for client in list(_LIVE_CLIENTS):
        client._reset_after_fork()


os.register_at_fork(after_in_child=_reset_clients_in_child)


class ConfigClient:
    """Watches the stageconfig server and serves every stage's config from memory.

    ::

        client = ConfigClient("config.internal:50051", token=worker_token)
        client.start()                      # returns at once; the stream runs in a thread
        client.wait_ready(timeout=10)       # NotReadyError names the target and last error
        poem = client.get(StageType.POEM)   # frozen StageConfig, no network
        client.close()

    Arguments:
        target: ``host:port`` of the server, or several replicas (a sequence, or one
            string with commas): the client watches one at a time and, when its stream
            fails or ends, moves to the next and resumes from its revision.
        token: a worker token (plaintext keys); an admin token gets masked keys.
        stages: the stages to watch (default: all four).
        cache_path: the last-known-good file. Read at ``start()`` (serving it in state
            STALE until the server answers) and rewritten atomically on every new
            revision. Its keys are encrypted with ``cache_key``.
        cache_key: the secret the file's keys are encrypted with; default: the
            ``STAGECONFIG_CACHE_KEY`` environment variable. With ``cache_path`` and no
            key the client refuses to start (CacheFileError): keys are never written in
            the clear.
        client_id: the name ListWatchers shows (default ``hostname/pid``).
        tls, root_certificates, client_certificate, client_key: TLS / mTLS (any
            certificate argument implies TLS).
        heartbeat_seconds: the server's heartbeat period; default: learned from the
            stream (10 s assumed until then).
        stale_after_heartbeats: missed heartbeats before the state turns STALE and the
            stream is re-established.
        backoff_initial_seconds, backoff_max_seconds: reconnect delays, full-jitter
            exponential from the first to the second.
        channel_options: extra grpc channel options.
        connect_timeout_seconds: how long an unreachable server is waited for (the
            channel keeps retrying meanwhile, so a returning server is used at once)
            before the next target is tried: 3 s with several targets, 30 s with one.

    ``get`` and ``snapshot`` keep serving the last config held in every state but
    CONNECTING (nothing held yet) and CLOSED; ``wait_ready`` returns only in READY.
    Listeners run on the client's threads, in order; keep them short, and never let
    them block on the client. Their exceptions are logged and ignored.
    """

    def __init__(
        self,
        target: str | Sequence[str],
        *,
        token: str | None = None,
        stages: Iterable[StageType | str] | None = None,
        cache_path: str | os.PathLike[str] | None = None,
        cache_key: str | None = None,
        client_id: str | None = None,
        tls: bool = False,
        root_certificates: bytes | None = None,
        client_certificate: bytes | None = None,
        client_key: bytes | None = None,
        heartbeat_seconds: float | None = None,
        stale_after_heartbeats: int = 3,
        backoff_initial_seconds: float = 0.5,
        backoff_max_seconds: float = 30.0,
        channel_options: Sequence[tuple[str, Any]] = (),
        connect_timeout_seconds: float | None = None,
    ) -> None:
        targets = tuple(
            t.strip()
            for t in (target.split(",") if isinstance(target, str) else target)
            if t.strip()
        )
        if not targets:
            raise ValueError("target is required (host:port of the stageconfig server)")
        if heartbeat_seconds is not None and heartbeat_seconds <= 0:
            raise ValueError("heartbeat_seconds must be positive")
        if stale_after_heartbeats < 1:
            raise ValueError("stale_after_heartbeats must be at least 1")
        Backoff(backoff_initial_seconds, backoff_max_seconds)  # validates the pair
        self._targets = targets
        self._stream_delivered = False
        if connect_timeout_seconds is not None and connect_timeout_seconds <= 0:
            raise ValueError("connect_timeout_seconds must be positive")
        self._connect_timeout = connect_timeout_seconds or (
            DEFAULT_FAILOVER_CONNECT_TIMEOUT_SECONDS
            if len(targets) > 1
            else DEFAULT_CONNECT_TIMEOUT_SECONDS
        )
        self._target_index = 0
        self._target = targets[0]
        # The cache file names the replica set it came from, not the replica of the day.
        self._targets_key = ",".join(targets)
        self._token = token
        self._watch_all = not stages
        self._stages = frozenset(StageType(s) for s in stages) if stages else frozenset(StageType)
        self._client_id = client_id
        self._tls = tls
        self._root_certificates = root_certificates
        self._client_certificate = client_certificate
        self._client_key = client_key
        self._configured_period = heartbeat_seconds
        self._stale_after_heartbeats = stale_after_heartbeats
        self._backoff_initial = backoff_initial_seconds
        self._backoff_max = backoff_max_seconds
        self._channel_options = tuple(channel_options)
        self._cache: CacheFile | None = None
        if cache_path is not None:
            secret = cache_key if cache_key is not None else os.environ.get(CACHE_KEY_ENV, "")
            if not secret:
                raise CacheFileError(
                    f"cache_path is set but {CACHE_KEY_ENV} is not: the last-known-good "
                    "file holds API keys and is only ever written encrypted. Set "
                    f"{CACHE_KEY_ENV} (a long random secret shared by the workers of the "
                    "host) or drop cache_path."
                )
            self._cache = CacheFile(cache_path, secret)
        self._store = SnapshotStore(self._stages)
        self._change_listeners: list[ChangeListener] = []
        self._state_listeners: list[StateListener] = []
        self._started = False
        self._closed = False
        self._resumable = False
        self._last_confirmed: float | None = None  # monotonic; system-wide, survives fork
        self._cache_written_at: datetime | None = None
        self._period = heartbeat_seconds or DEFAULT_HEARTBEAT_SECONDS
        self._init_process_state()
        _LIVE_CLIENTS.add(self)

    def _init_process_state(self) -> None:
        """Everything that must not cross a fork: locks, events, threads, grpc objects."""
        self._pid = os.getpid()
        self._lock = threading.RLock()
        self._cond = threading.Condition(self._lock)
        self._dispatch_lock = threading.RLock()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._channel: grpc.Channel | None = None
        self._call: Any = None
        self._call_started_at = 0.0
        self._call_last_message_at: float | None = None
        self._call_heartbeats = 0
        self._call_learned = False
        self._call_cancelled_as_stale = False
        self._fatal: StageConfigError | None = None
        self._last_error: StageConfigError | None = None
        self._state = ClientState.CLOSED if self._closed else ClientState.CONNECTING

    def _reset_after_fork(self) -> None:
        """In a forked child: drop the parent's threads and grpc objects, keep the data,
        and let the next call start over."""
        if self._channel is not None or self._call is not None:
            _FORK_ORPHANS.append((self._channel, self._call))
        self._init_process_state()
        self._state = self._derive_state(time.monotonic())

    def _ensure_process(self) -> None:
        if os.getpid() != self._pid:  # forked without os.fork's hooks (rare)
            self._reset_after_fork()
        if self._started and not self._closed and not self._threads:
            self._spawn_threads()

    # -- public API ------------------------------------------------------------------------

    def __repr__(self) -> str:
        current = self._store.current
        revision = current.revision if current is not None else None
        return f"ConfigClient(target={self._target!r}, state={self._state}, revision={revision})"

    def __enter__(self) -> ConfigClient:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    @property
    def target(self) -> str:
        """The server this client watches now (one of ``targets``)."""
        return self._target

    @property
    def targets(self) -> tuple[str, ...]:
        """Every server this client may watch, in failover order."""
        return self._targets

    @property
    def stages(self) -> frozenset[StageType]:
        """The watched stages."""
        return self._stages

    @property
    def client_id(self) -> str:
        """The name the server's ListWatchers shows for this client."""
        return self._client_id or f"{socket.gethostname()}/{os.getpid()}"

    @property
    def state(self) -> ClientState:
        """The current state."""
        self._ensure_process()
        return self._state

    @property
    def last_error(self) -> StageConfigError | None:
        """The last connection error (the fatal one in FATAL), or None."""
        return self._fatal or self._last_error

    @property
    def applied_revision(self) -> int:
        """The server revision the held config is current at (0: none held)."""
        current = self._store.current
        return current.revision if current is not None else 0

    @property
    def staleness_seconds(self) -> float:
        """Seconds since the server last confirmed the held config (any message on the
        stream counts); for config read from the last-known-good file, since the file was
        written; ``inf`` when nothing is held."""
        if self._last_confirmed is not None:
            return max(0.0, time.monotonic() - self._last_confirmed)
        if self._cache_written_at is not None:
            return max(0.0, time.time() - self._cache_written_at.timestamp())
        return math.inf

    @property
    def heartbeat_seconds(self) -> float:
        """The heartbeat period in use: configured, or learned from the stream."""
        return self._period

    def start(self) -> ConfigClient:
        """Load the last-known-good file (if any) and start watching; returns at once."""
        self._ensure_process()
        with self._lock:
            if self._closed:
                raise ClientClosedError("the client was closed")
            if self._started:
                return self
            self._started = True
        self._load_cache()
        self._refresh_state()
        self._spawn_threads()
        return self

    def wait_ready(self, timeout: float | None = None) -> None:
        """Block until READY (starting the client if needed).

        Raises NotReadyError, naming the target, the state and the last error, when
        ``timeout`` passes first or the server refused the client for good (FATAL);
        ClientClosedError when the client is closed meanwhile.
        """
        self.start()
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while True:
                state = self._state
                if state is ClientState.READY:
                    return
                if state is ClientState.CLOSED:
                    raise ClientClosedError("the client was closed")
                if state is ClientState.FATAL:
                    raise NotReadyError(
                        f"stageconfig server {self._target} refused this client: "
                        f"{self._fatal}; it will not retry"
                    ) from self._fatal
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    raise NotReadyError(self._not_ready_message(timeout)) from self.last_error
                self._cond.wait(remaining)

    def get(self, stage: StageType | str) -> StageConfig:
        """The stage's config, from memory (no network).

        Raises NotReadyError when no config is held yet, and StageNotConfiguredError (a
        KeyError) when the stage has no config or is not watched by this client.
        """
        # StageType(x) costs ~0.3 µs even when x already is one (Enum.__call__), a third
        # of this hot path run by every task (scripts/bench): convert only strings.
        if type(stage) is not StageType:
            stage = StageType(stage)
        self._ensure_process()
        if self._closed:
            raise ClientClosedError("the client was closed")
        if stage not in self._stages:
            watched = ", ".join(sorted(self._stages))
            raise StageNotConfiguredError(
                stage, f"this client does not watch stage {stage} (it watches {watched})"
            )
        snapshot = self._store.current
        if snapshot is None:
            raise NotReadyError(self._not_ready_message(None))
        config = snapshot.configs.get(stage)
        if config is None:
            raise StageNotConfiguredError(
                stage,
                f"stage {stage} has no config at revision {snapshot.revision} of "
                f"{self._target}: nothing is stored and no legacy setting supplies one",
            )
        return config

    def snapshot(self) -> ConfigSnapshot:
        """Every watched stage's config at one revision (NotReadyError before any)."""
        self._ensure_process()
        if self._closed:
            raise ClientClosedError("the client was closed")
        snapshot = self._store.current
        if snapshot is None:
            raise NotReadyError(self._not_ready_message(None))
        return snapshot

    def on_change(self, listener: ChangeListener) -> Callable[[], None]:
        """Call ``listener`` with every change of the held config (which stages, old and
        new); returns a function that removes it."""
        with self._lock:
            self._change_listeners.append(listener)
        return lambda: self._remove(self._change_listeners, listener)

    def on_state(self, listener: StateListener) -> Callable[[], None]:
        """Call ``listener`` with every state transition; returns a function that
        removes it."""
        with self._lock:
            self._state_listeners.append(listener)
        return lambda: self._remove(self._state_listeners, listener)

    def close(self) -> None:
        """Stop watching: interrupts every wait, ends the threads, closes the channel.
        Idempotent."""
        self._ensure_process_locks()
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._stop.set()
            call, channel, threads = self._call, self._channel, list(self._threads)
        if call is not None:
            call.cancel()
        self._refresh_state()
        with self._cond:
            self._cond.notify_all()
        # Called from a listener (one of our threads): joining the other one could wait
        # on the dispatch lock this thread holds, so the threads just finish on their own.
        if threading.current_thread() not in threads:
            for thread in threads:
                thread.join(_JOIN_SECONDS)
        if channel is not None:
            channel.close()
        _LIVE_CLIENTS.discard(self)

    # -- internals: threads ----------------------------------------------------------------

    def _ensure_process_locks(self) -> None:
        if os.getpid() != self._pid:
            self._reset_after_fork()

    def _remove(self, listeners: list[Any], listener: object) -> None:
        with self._lock:
            if listener in listeners:
                listeners.remove(listener)

    def _spawn_threads(self) -> None:
        with self._lock:
            if self._threads or self._closed:
                return
            stop = self._stop
            self._threads = [
                threading.Thread(
                    target=self._watch_loop,
                    args=(stop,),
                    name=f"stageconfig-watch[{self._target}]",
                    daemon=True,
                ),
                threading.Thread(
                    target=self._watchdog_loop,
                    args=(stop,),
                    name=f"stageconfig-watchdog[{self._target}]",
                    daemon=True,
                ),
            ]
            threads = list(self._threads)
        for thread in threads:
            thread.start()

    def _watch_loop(self, stop: threading.Event) -> None:
        backoff = Backoff(self._backoff_initial, self._backoff_max)
        while not stop.is_set():
            error = self._stream_once(stop, backoff)
            if stop.is_set():
                return
            if isinstance(error, RPCError) and error.code in FATAL_CODES:
                self._fatal = error
                log.error(
                    "stageconfig server %s refused this client (%s); not retrying",
                    self._target,
                    error,
                )
                self._refresh_state()
                return
            self._last_error = error
            self._refresh_state()
            if self._stream_delivered:
                # The server answered and then ended or failed the stream (shutting
                # down, or dropped us as too slow): move on after a short jittered wait.
                self._next_target()
                delay = backoff.next_delay()
                log.info(
                    "stageconfig watch of %s interrupted (%s); reconnecting in %.2f s",
                    self._target,
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
            self._next_target()
            log.info(
                "stageconfig server %s unreachable (%s); waiting for %s",
                self._previous_target_name(),
                error,
                self._target,
            )
            self._await_connection(stop)

    def _stream_once(self, stop: threading.Event, backoff: Backoff) -> StageConfigError:
        """Run one WatchConfig stream to its end; the error that ended it."""
        import grpc  # here, not at import: no grpc object may exist before start()

        from stageconfig_contract.v1 import stage_config_pb2_grpc as pbg

        self._stream_delivered = False
        try:
            channel = self._ensure_channel()
            call: Any = pbg.StageConfigServiceStub(channel).WatchConfig(self._request())
            with self._lock:
                self._call = call
                self._call_started_at = time.monotonic()
                self._call_last_message_at = None
                self._call_heartbeats = 0
                self._call_learned = False
                self._call_cancelled_as_stale = False
            if stop.is_set():  # close() ran before the call was visible to it
                call.cancel()
            resumed = self._resuming
            for message in call:
                self._stream_delivered = True
                if self._call_last_message_at is None:
                    backoff.reset()  # the server answered: the next reconnect is quick
                self._handle(message, resumed)
            return UnavailableError(StatusCode.UNAVAILABLE, f"{self._target} ended the stream")
        except grpc.RpcError as exc:
            if not callable(getattr(exc, "code", None)):
                return UnavailableError(StatusCode.UNAVAILABLE, str(exc))
            return translate_rpc_error(exc)
        except Exception as exc:  # a bug or an unreadable message: retried like an outage
            if not stop.is_set():
                log.exception("stageconfig watch of %s failed", self._target)
            return StageConfigError(f"watch failed: {exc!r}")
        finally:
            with self._lock:
                self._call = None

    def _previous_target_name(self) -> str:
        index = (self._target_index - 1) % len(self._targets)
        return self._targets[index]

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
            self._target = self._targets[self._target_index]
        if channel is not None:
            channel.close()

    def _ensure_channel(self) -> grpc.Channel:
        from stageconfig._channel import create_channel

        with self._lock:
            if self._channel is None:
                options: list[tuple[str, Any]] = []
                if self._backoff_max < 5.0:
                    # grpc's own reconnect backoff must not outlast ours, or a call made
                    # after the server returned still fails fast for seconds.
                    options.append(("grpc.max_reconnect_backoff_ms", int(self._backoff_max * 1000)))
                self._channel = create_channel(
                    self._target,
                    token=self._token,
                    # Transitional: the TLS keyword arguments become one TlsConfig.
                    tls=TlsConfig(
                        self._root_certificates, self._client_certificate, self._client_key
                    )
                    if self._tls or self._root_certificates or self._client_certificate
                    else None,
                    options=[*options, *self._channel_options],
                )
            return self._channel

    @property
    def _resuming(self) -> bool:
        current = self._store.current
        return self._resumable and current is not None and current.revision > 0

    def _request(self) -> pb.WatchConfigRequest:
        request = pb.WatchConfigRequest(client_id=self.client_id)
        if not self._watch_all:  # an empty list means every stage
            request.stage_types.extend(stage_to_pb(s) for s in sorted(self._stages))
        if self._resuming:
            request.resume_revision = self.applied_revision
        return request

    def _watchdog_loop(self, stop: threading.Event) -> None:
        while True:
            last = self._last_confirmed
            now = time.monotonic()
            if last is None or self._state is not ClientState.READY:
                wait = _WATCHDOG_IDLE_TICK
            else:
                wait = min(_WATCHDOG_IDLE_TICK, max(0.02, last + self._stale_after() - now))
            if stop.wait(wait) or self._fatal is not None:
                return
            self._refresh_state()
            self._cancel_silent_call()

    def _stale_after(self) -> float:
        return self._stale_after_heartbeats * self._period

    def _cancel_silent_call(self) -> None:
        """Cancel a stream that has been silent for the staleness bound (a half-open
        connection, a frozen server): the watch thread then reconnects."""
        with self._lock:
            call = self._call
            if call is None or self._call_cancelled_as_stale:
                return
            last = self._call_last_message_at or self._call_started_at
            if time.monotonic() - last <= self._stale_after():
                return
            self._call_cancelled_as_stale = True
            if (
                self._configured_period is None
                and self._call_last_message_at is not None
                and self._call_heartbeats == 0
            ):
                # Data but no heartbeat in time: the server's period must be longer than
                # the one learned from an earlier stream. Widen it rather than loop.
                self._period = min(_MAX_LEARNED_PERIOD, self._period * 2)
        log.warning(
            "stageconfig stream of %s silent for over %.1f s; reconnecting",
            self._target,
            self._stale_after(),
        )
        call.cancel()

    # -- internals: messages, state, listeners ---------------------------------------------

    def _handle(self, message: pb.WatchConfigResponse, resumed: bool) -> None:
        now = time.monotonic()
        kind = message.WhichOneof("event")
        update: StoreUpdate | None = None
        if kind == "heartbeat":  # before the timestamps move: it measures the gap
            self._learn_period(now, first_of_resume=resumed and self._call_heartbeats == 0)
            self._call_heartbeats += 1
        self._call_last_message_at = now
        self._last_confirmed = now
        if kind == "snapshot":
            current = self._store.current
            revision = message.snapshot.revision
            if (
                current is not None
                and current.source is not SnapshotSource.CACHE
                and revision < current.revision
            ):
                log.warning(
                    "stageconfig server %s is at revision %d, below the %d this client "
                    "held (database restored from a backup?): following the server",
                    self._target,
                    revision,
                    current.revision,
                )
            configs = [config_from_pb(c) for c in message.snapshot.configs]
            update = self._store.replace(revision, configs, SnapshotSource.SNAPSHOT)
            self._resumable = True
        elif kind == "change":
            update = self._store.apply(
                message.change.revision, config_from_pb(message.change.config)
            )
        elif kind == "heartbeat":
            update = self._store.advance(message.heartbeat.head_revision)
        self._refresh_state()
        if update is not None and update.changes:
            self._dispatch_change(update)
        if update is not None and update.revision_moved:
            self._save_cache(update.snapshot)

    def _learn_period(self, now: float, first_of_resume: bool) -> None:
        # The server restarts its heartbeat timer after every message it writes, so the
        # time since the previous message is the period — except for the heartbeat that
        # closes a resume's burst of missed changes, which follows them at once.
        if self._configured_period is not None or first_of_resume:
            return
        previous = self._call_last_message_at
        if previous is None:
            return
        gap = min(_MAX_LEARNED_PERIOD, max(_MIN_LEARNED_PERIOD, now - previous))
        # The first gap of a stream replaces what an earlier stream taught (the server
        # may have restarted with another period); later ones only tighten it.
        self._period = min(self._period, gap) if self._call_learned else gap
        self._call_learned = True

    def _load_cache(self) -> None:
        if self._cache is None or self._store.current is not None:
            return
        try:
            cached = self._cache.load()
        except CacheFileError as exc:
            log.warning("ignoring the last-known-good file: %s", exc)
            return
        if cached is None:
            return
        update = self._store.replace(cached.revision, cached.configs, SnapshotSource.CACHE)
        # Resume from the file only when it describes this server and every stage we
        # watch; otherwise its revision says nothing about what we would miss.
        self._resumable = cached.target == self._targets_key and self._stages <= cached.stages
        self._cache_written_at = cached.written_at
        log.info(
            "serving the last-known-good config of %s (revision %d, written %s) until the "
            "server answers",
            self._cache.path,
            cached.revision,
            cached.written_at.isoformat(),
        )
        if update.changes:
            self._dispatch_change(update)

    def _save_cache(self, snapshot: ConfigSnapshot) -> None:
        if self._cache is None:
            return
        state = CachedState(
            revision=snapshot.revision,
            target=self._targets_key,
            stages=self._stages,
            configs=tuple(snapshot.configs[s] for s in sorted(snapshot.configs)),
            written_at=datetime.now(UTC),
        )
        try:
            self._cache.save(state)
        except CacheFileError as exc:
            log.warning("could not write the last-known-good file: %s", exc)

    def _derive_state(self, now: float) -> ClientState:
        if self._closed:
            return ClientState.CLOSED
        if self._fatal is not None:
            return ClientState.FATAL
        if self._store.current is None:
            return ClientState.CONNECTING
        last = self._last_confirmed
        if last is not None and now - last <= self._stale_after():
            return ClientState.READY
        return ClientState.STALE

    def _refresh_state(self) -> None:
        # The dispatch lock spans computing and announcing a transition, so listeners
        # see transitions in the order they happened, whichever thread made them.
        with self._dispatch_lock:
            with self._lock:
                previous = self._state
                state = self._derive_state(time.monotonic())
                if state is previous:
                    return
                self._state = state
                self._cond.notify_all()
                listeners = list(self._state_listeners)
            error = self.last_error if state is not ClientState.READY else None
            log.info("stageconfig client of %s: %s -> %s", self._target, previous, state)
            event = StateChange(previous, state, error)
            for listener in listeners:
                try:
                    listener(event)
                except Exception:
                    log.exception("stageconfig state listener failed")

    def _dispatch_change(self, update: StoreUpdate) -> None:
        event = ConfigChangeEvent(update.snapshot.revision, update.changes, update.snapshot)
        with self._dispatch_lock:
            with self._lock:
                listeners = list(self._change_listeners)
            for listener in listeners:
                try:
                    listener(event)
                except Exception:
                    log.exception("stageconfig change listener failed")

    def _not_ready_message(self, timeout: float | None) -> str:
        within = f" within {timeout:g} s" if timeout is not None else " yet"
        if not self._started:
            return f"the client of {self._target} is not started: call start() first"
        error = self.last_error
        return (
            f"no config from stageconfig server {self._target}{within} "
            f"(state {self._state}; last error: {error or 'none'})"
        )
