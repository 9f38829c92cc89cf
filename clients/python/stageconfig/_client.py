"""``ConfigClient``: a hot, in-memory copy of every stage's config, kept current by the
server's WatchConfig stream.

This is the public facade; the work happens in the rooms behind it: ``_watcher`` (the
stream, reconnects, failover, the connection probe), ``_liveness`` (heartbeats and the
STALE decision), ``_messages`` (what each message does to the held config), ``_store``
(the snapshot, swapped whole), ``_state`` and ``_events`` (states and listeners),
``_cache_file`` (the last-known-good file), ``_fleet`` (validators, task outcomes and
the status reports) and ``_lifecycle`` (threads, fork, close).

Threads: a daemon *watch* thread runs the stream on the synchronous grpc API (blocking
iteration; ``call.cancel()`` from another thread ends it), a daemon *watchdog* thread
turns silence into STALE and cancels a stream that has gone quiet so it is
re-established, and a daemon *report* thread sends the status reports (``_reporter``).
Every wait is on a ``threading.Event`` or the state ``Condition``, so ``close()``
interrupts all of them at once.

Fork safety: no grpc object exists before ``start()`` (grpc itself is imported lazily
by the watch and report threads). After ``fork()`` the child resets its locks, abandons
what the parent had open (grpc objects created before a fork must not be used or closed
in the child), keeps the config and validators it inherited (the parent's unsent task
outcomes stay the parent's), and starts a new channel and threads lazily on its next
call — so a client created (or even started) before Celery's prefork pool
forks still works in every child. Creating the client only after the fork, as
``stageconfig.contrib.celery`` does, needs no grpc fork support at all.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from stageconfig._cache_file import LastKnownGood
from stageconfig._events import (
    ChangeListener,
    ClientState,
    Listeners,
    StateListener,
)
from stageconfig._fleet import Fleet, FleetMethods
from stageconfig._lifecycle import Lifecycle
from stageconfig._liveness import Liveness
from stageconfig._options import TimingOptions
from stageconfig._state import StateTracker
from stageconfig._store import ConfigSnapshot, SnapshotStore, StoreUpdate
from stageconfig._surface import ClientSurface, unserved_stage
from stageconfig._types import StageConfig, StageType
from stageconfig._watcher import Watcher
from stageconfig.errors import (
    ClientClosedError,
    NotReadyError,
    StageConfigError,
    StageNotConfiguredError,
)
from stageconfig.tls import TlsConfig


def _split_targets(target: str | Sequence[str]) -> tuple[str, ...]:
    names = target.split(",") if isinstance(target, str) else target
    targets = tuple(t.strip() for t in names if t.strip())
    if not targets:
        raise ValueError("target is required (host:port of the stageconfig server)")
    return targets


class ConfigClient(FleetMethods, ClientSurface):
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
        tls: a ``TlsConfig`` for TLS / mTLS; None: plaintext.
        timing: heartbeats, staleness, reconnect backoff, connect timeouts and the
            report interval (``TimingOptions``; the defaults suit production).
        channel_options: extra grpc channel options.

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
        tls: TlsConfig | None = None,
        timing: TimingOptions | None = None,
        channel_options: Sequence[tuple[str, Any]] = (),
    ) -> None:
        targets = _split_targets(target)
        if tls is not None and not isinstance(tls, TlsConfig):
            raise TypeError("tls takes a TlsConfig (tls=TlsConfig() for the system's roots)")
        timing = timing or TimingOptions()
        self._targets = targets
        self._client_id = client_id
        self._stages = frozenset(StageType(s) for s in stages) if stages else frozenset(StageType)
        self._cache = (
            LastKnownGood(cache_path, cache_key, targets=targets, stages=self._stages)
            if cache_path is not None
            else None
        )
        self._store = SnapshotStore(self._stages)
        self._listeners = Listeners()
        self._liveness = Liveness(timing)
        self._fleet = Fleet(
            self._store,
            client_id=lambda: self.client_id,
            channel=lambda: self._watcher.channel(),
            interval=timing.report_interval_seconds,
        )
        self._watcher = Watcher(
            targets,
            token=token,
            tls=tls,
            channel_options=channel_options,
            timing=timing,
            stages=self._stages,
            watch_all=not stages,
            client_id=lambda: self.client_id,
            store=self._store,
            gate=self._fleet.gate,
            liveness=self._liveness,
            refresh_state=lambda: self._tracker.refresh(),
            on_update=self._on_update,
        )
        self._lifecycle = Lifecycle(
            lambda: self.target,
            self._watcher.run,
            lambda stop: self._liveness.run_watchdog(stop, self._is_ready, self._tick),
            self._fleet.reporter.run,
            self._forget_process,
        )
        self._tracker = StateTracker(
            self._derive_state, self._listeners, lambda: self.last_error, lambda: self.target
        )

    def _forget_process(self) -> object:
        """In a forked child: fresh locks everywhere, the data kept; the parent's grpc
        objects, abandoned."""
        abandoned = self._watcher.reset_after_fork()
        self._listeners.reset_after_fork()
        self._liveness.reset_after_fork()
        self._tracker.reset_after_fork()
        self._fleet.reset_after_fork()
        return abandoned

    # -- public API ------------------------------------------------------------------------

    def __repr__(self) -> str:
        return (
            f"ConfigClient(target={self.target!r}, state={self._tracker.state}, "
            f"revision={self._revision_or_none()})"
        )

    @property
    def target(self) -> str:
        """The server this client watches now (one of ``targets``)."""
        return self._watcher.target

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
        self._lifecycle.ensure_process()
        return self._tracker.state

    @property
    def last_error(self) -> StageConfigError | None:
        """The last connection error (the fatal one in FATAL), or None."""
        return self._watcher.fatal or self._watcher.last_error

    @property
    def staleness_seconds(self) -> float:
        """Seconds since the server last confirmed the held config (any message on the
        stream counts); for config read from the last-known-good file, since the file was
        written; ``inf`` when nothing is held."""
        return self._liveness.staleness_seconds(time.monotonic())

    @property
    def heartbeat_seconds(self) -> float:
        """The heartbeat period in use: configured, or learned from the stream."""
        return self._liveness.period

    def start(self) -> ConfigClient:
        """Load the last-known-good file (if any) and start watching; returns at once."""
        self._lifecycle.ensure_process()
        if self._lifecycle.start():
            self._load_cache()
            self._tracker.refresh()
            self._lifecycle.spawn()
        return self

    def wait_ready(self, timeout: float | None = None) -> None:
        """Block until READY (starting the client if needed).

        Raises NotReadyError, naming the target, the state and the last error, when
        ``timeout`` passes first or the server refused the client for good (FATAL);
        ClientClosedError when the client is closed meanwhile.
        """
        self.start()
        state = self._tracker.wait_settled(timeout)
        if state is ClientState.READY:
            return
        if state is ClientState.CLOSED:
            raise ClientClosedError("the client was closed")
        if state is ClientState.FATAL:
            fatal = self._watcher.fatal
            raise NotReadyError(
                f"stageconfig server {self.target} refused this client: {fatal}; it will not retry"
            ) from fatal
        raise NotReadyError(self._not_ready_message(timeout)) from self.last_error

    def get(self, stage: StageType | str) -> StageConfig:
        """The stage's config, from memory (no network).

        Raises NotReadyError when no config is held yet, and StageNotConfiguredError (a
        KeyError) when the stage has no config or is not watched by this client.
        """
        # StageType(x) costs ~0.3 µs even when x already is one (Enum.__call__), a third
        # of this hot path run by every task (scripts/bench): convert only strings.
        if type(stage) is not StageType:
            stage = StageType(stage)
        self._lifecycle.ensure_process()
        if self._lifecycle.closed:
            raise ClientClosedError("the client was closed")
        if stage not in self._stages:
            raise unserved_stage(stage, self._stages, "watch")
        snapshot = self._store.current
        if snapshot is None:
            raise NotReadyError(self._not_ready_message(None))
        config = snapshot.configs.get(stage)
        if config is None:
            raise StageNotConfiguredError(
                stage,
                f"stage {stage} has no config at revision {snapshot.revision} of "
                f"{self.target}: nothing is stored and no legacy setting supplies one",
            )
        return config

    def snapshot(self) -> ConfigSnapshot:
        """Every watched stage's config at one revision (NotReadyError before any)."""
        self._lifecycle.ensure_process()
        if self._lifecycle.closed:
            raise ClientClosedError("the client was closed")
        snapshot = self._store.current
        if snapshot is None:
            raise NotReadyError(self._not_ready_message(None))
        return snapshot

    def on_change(self, listener: ChangeListener) -> Callable[[], None]:
        """Call ``listener`` with every change of the held config (which stages, old and
        new); returns a function that removes it."""
        return self._listeners.add_change(listener)

    def on_state(self, listener: StateListener) -> Callable[[], None]:
        """Call ``listener`` with every state transition; returns a function that
        removes it."""
        return self._listeners.add_state(listener)

    def close(self) -> None:
        """Stop watching: interrupts every wait, ends the threads, closes the channel.
        Idempotent."""
        threads = self._lifecycle.close()
        if threads is None:
            return
        self._liveness.wake()
        self._fleet.reporter.interrupt()
        self._watcher.cancel()
        self._tracker.refresh()
        self._lifecycle.join(threads)
        self._watcher.close_channel()

    # -- internals -------------------------------------------------------------------------

    def _revision_or_none(self) -> int | None:
        current = self._store.current
        return current.revision if current is not None else None

    def _is_ready(self) -> bool:
        return self._tracker.state is ClientState.READY

    def _tick(self) -> bool:
        """The watchdog's turn: True while there is anything left to watch."""
        if self._watcher.fatal is not None:
            return False
        self._tracker.refresh()
        self._watcher.cancel_silent_call()
        return True

    def _load_cache(self) -> None:
        if self._cache is None or self._store.current is not None:
            return
        restored = self._cache.restore(self._store)
        if restored is not None:
            update, cached = restored
            self._watcher.resumable = self._cache.resumable(cached)
            self._liveness.cache_written_at = cached.written_at
            self._listeners.publish_change(update)

    def _on_update(self, update: StoreUpdate) -> None:
        """A stream message moved the store: tell the listeners, rewrite the file, report."""
        if update.revision_moved:
            self._fleet.reporter.wake()
        self._listeners.publish_change(update)
        if update.revision_moved and self._cache is not None:
            self._cache.save(update.snapshot)

    def _derive_state(self) -> ClientState:
        if self._lifecycle.closed:
            return ClientState.CLOSED
        if self._watcher.fatal is not None:
            return ClientState.FATAL
        if self._store.current is None:
            return ClientState.CONNECTING
        live = self._liveness.is_live(time.monotonic())
        return ClientState.READY if live else ClientState.STALE

    def _not_ready_message(self, timeout: float | None) -> str:
        within = f" within {timeout:g} s" if timeout is not None else " yet"
        if not self._lifecycle.started:
            return f"the client of {self.target} is not started: call start() first"
        return (
            f"no config from stageconfig server {self.target}{within} "
            f"(state {self._tracker.state}; last error: {self.last_error or 'none'})"
        )
