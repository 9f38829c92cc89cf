"""The agent itself: the lock, the segment, the ConfigClient inside, the heartbeat and
the report relay — started and stopped in that order by ``Agent.run``.

**One agent per segment.** The agent takes an exclusive ``flock`` on ``<segment>.lock``
(waiting up to ``lock_wait_seconds`` for a predecessor that is still shutting down, or
for a supervisor's probe) and writes its pid there; a second agent of the same user and
targets exits with ``EXIT_ALREADY_RUNNING``. The kernel drops the lock when the agent
dies, so a supervisor sees a dead agent at once.

**Publishing.** Every change the ConfigClient applies is published at once (its change
listener); the heartbeat turn (``heartbeat_seconds``) publishes a snapshot whose
revision moved without a change (a server heartbeat) and stamps the heartbeat, the
client's state and its last error into the header. A restarted agent reopens the same
segment and continues its generations, so attached workers keep their mapping; it
does not publish a snapshot read from its last-known-good file that is older than the
one the segment already holds (the workers keep the newer one until the server
answers).
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from stageconfig._client import ConfigClient
from stageconfig._events import ConfigChangeEvent
from stageconfig._options import TimingOptions
from stageconfig._segment import (
    DEFAULT_SLOT_CAPACITY,
    SegmentError,
    SegmentReader,
    SegmentWriter,
    lock_holder,
    segment_paths,
    try_lock,
)
from stageconfig._snapshot_codec import UnsupportedPayload, decode, encode
from stageconfig._store import ConfigSnapshot, SnapshotSource
from stageconfig.agent._relay import Relay
from stageconfig.tls import TlsConfig

log = logging.getLogger("stageconfig.agent")

EXIT_ALREADY_RUNNING = 3
"""Another agent holds the segment's lock: workers use that one."""


@dataclass(frozen=True)
class AgentOptions:
    """What an agent watches and how (the command's flags, ``_cli``)."""

    targets: tuple[str, ...]
    token: str | None = None
    cache_path: Path | None = None
    cache_key: str | None = None
    client_id: str | None = None
    tls: TlsConfig | None = None
    timing: TimingOptions = field(default_factory=TimingOptions)
    directory: Path | None = None
    heartbeat_seconds: float = 0.25
    """How often the agent stamps its heartbeat into the segment."""
    stale_after_seconds: float = 3.0
    """How long without a stamp before attached workers call the config STALE."""
    slot_bytes: int = DEFAULT_SLOT_CAPACITY
    lock_wait_seconds: float = 5.0


class _Publisher:
    """Writes the client's snapshots into the segment (from the change listener and
    the heartbeat turn; one lock)."""

    def __init__(self, writer: SegmentWriter, held_revision: int) -> None:
        self._writer = writer
        self._lock = threading.Lock()
        self._last: ConfigSnapshot | None = None
        self._held_revision = held_revision
        self.published = 0

    def publish(self, snapshot: ConfigSnapshot | None) -> None:
        if snapshot is None:
            return
        with self._lock:
            if snapshot is self._last:
                return
            self._last = snapshot
            if snapshot.source is SnapshotSource.CACHE and snapshot.revision < self._held_revision:
                return  # the segment holds newer config than this agent's file
            try:
                self._writer.publish(encode(snapshot))
            except SegmentError as exc:
                log.error("stageconfig-agent: %s", exc)
                return
            self._held_revision = max(self._held_revision, snapshot.revision)
            self.published += 1


def _held_revision(path: Path) -> int:
    """The revision of the snapshot a previous agent left in the segment (0: none)."""
    try:
        reader = SegmentReader(path)
    except (OSError, SegmentError):
        return 0
    try:
        read = reader.read()
        return decode(read[1]).revision if read is not None else 0
    except (SegmentError, UnsupportedPayload, ValueError):
        return 0
    finally:
        reader.close()


class Agent:
    """One host's agent (see the module)."""

    def __init__(self, options: AgentOptions) -> None:
        self.options = options
        self.paths = segment_paths(options.targets, options.directory)
        self.client: ConfigClient | None = None
        self.relay: Relay | None = None

    def _lock(self) -> int | None:
        deadline = time.monotonic() + self.options.lock_wait_seconds
        while True:
            fd = try_lock(self.paths.lock)
            if fd is not None:
                os.ftruncate(fd, 0)
                os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
                return fd
            if time.monotonic() >= deadline:
                return None
            time.sleep(0.05)

    def run(self, stop: threading.Event) -> int:
        """Serve until ``stop`` is set; the exit code."""
        lock = self._lock()
        if lock is None:
            log.info(
                "stageconfig-agent: the agent of pid %s already serves %s; exiting",
                lock_holder(self.paths),
                self.paths.segment,
            )
            return EXIT_ALREADY_RUNNING
        try:
            return self._serve(stop)
        finally:
            os.close(lock)

    def _serve(self, stop: threading.Event) -> int:
        o = self.options
        held = _held_revision(self.paths.segment)
        writer = SegmentWriter(self.paths.segment, o.slot_bytes)
        publisher = _Publisher(writer, held)
        pid = os.getpid()
        writer.beat("CONNECTING", pid, o.stale_after_seconds, o.heartbeat_seconds)
        client = self.client = ConfigClient(
            o.targets,
            token=o.token,
            cache_path=o.cache_path,
            cache_key=o.cache_key,
            # Stable across agent restarts (not the pid): a rollout's cohort is chosen by
            # this id, so a restarted agent must land on the same side. One agent per
            # user and targets on a host, hence the uid.
            client_id=o.client_id or f"{socket.gethostname()}/stageconfig-agent/{os.getuid()}",
            tls=o.tls,
            timing=o.timing,
        )

        def on_change(event: ConfigChangeEvent) -> None:
            publisher.publish(event.snapshot)

        client.on_change(on_change)
        relay = self.relay = Relay(self.paths.socket, client._watcher.channel)
        relay_stop = threading.Event()
        relay_thread = threading.Thread(
            target=relay.run, args=(relay_stop,), name="stageconfig-agent-relay", daemon=True
        )
        relay_thread.start()
        client.start()
        log.info(
            "stageconfig-agent %d serving %s from %s (segment %s)",
            pid,
            ",".join(o.targets),
            client.target,
            self.paths.segment,
        )
        note = ""
        try:
            while True:
                publisher.publish(client._store.current)
                state = client.state
                writer.beat(state.value, pid, o.stale_after_seconds, o.heartbeat_seconds)
                error = str(client.last_error or "")
                if error != note:
                    writer.note(error)
                    note = error
                if stop.wait(o.heartbeat_seconds):
                    break
        finally:
            writer.beat("CLOSED", pid, o.stale_after_seconds, o.heartbeat_seconds)
            relay_stop.set()
            relay_thread.join(10)
            client.close()
            relay.close()
            writer.close()
            log.info("stageconfig-agent %d stopped", pid)
        return 0


def describe(paths_of: Sequence[str], directory: Path | None = None) -> str:
    """One line for ``--status``: which agent (pid) serves which segment."""
    paths = segment_paths(paths_of, directory)
    pid = lock_holder(paths)
    with contextlib.suppress(OSError):
        if pid is not None:
            return f"running (pid {pid}); segment {paths.segment}"
    return f"not running; segment {paths.segment}"
