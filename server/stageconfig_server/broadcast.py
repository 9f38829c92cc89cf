"""Fan-out of committed changes to WatchConfig streams.

Each change is serialized once for all watchers (a plaintext-key form for workers and
a masked form for admins) by the injected ``WatchEncoder`` (the transport's, in
``rpc/watch_encoding.py``: this module knows no wire format) and handed to every
interested watcher as bytes. A watcher
keeps at most one pending change per stage (newer replaces older), so a slow reader
costs a bounded amount of memory; a write that cannot complete within
``send_timeout`` drops the stream and the client resumes from its revision.

A window of recent encoded changes serves resumes from memory: a client that comes
back with a revision inside the window gets exactly the changes it missed (then a
heartbeat); older revisions, and revisions beyond the head, get a fresh snapshot.

What a stream carries, in order: a snapshot or the missed changes, then changes and
heartbeats. A heartbeat is only sent when the watcher has nothing pending, so its
``head_revision`` promises that every change up to it for the watched stages has been
written to the stream before it — a client may treat itself as current up to that
head. Coalescing drops only changes that a newer change of the same stage supersedes,
so a reader's state after any message equals the server's state at that revision.

During a rollout (issue 15) a revision may be for one side only: a rollout's start and
its abort reach only the watchers in its cohort (``EncodedChange.reaches``: membership is
recomputed from the rollout, never stored per watcher), everything else reaches everyone.
Live changes, the resume window and snapshots all filter the same way, so a watcher
resuming after a reconnect gets exactly what it missed on its own side. A heartbeat's
head stays the global head: every change up to it that this watcher receives has been
written before it, and resuming from it returns that side's later changes only.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import time
from collections.abc import AsyncGenerator, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Protocol

from stageconfig_server.domain import StageConfig, StageType
from stageconfig_server.rollout_types import Audience, Cohort, RolloutRecord
from stageconfig_server.service import ConfigChange, ConfigService

log = logging.getLogger(__name__)

DEFAULT_RETAINED_CHANGES = 10_000
DEFAULT_SEND_TIMEOUT_SECONDS = 10.0


@dataclass(frozen=True, slots=True)
class EncodedChange:
    """One change serialized for both audiences."""

    revision: int
    stage_type: StageType
    worker_bytes: bytes
    admin_bytes: bytes
    committed_at: float = 0.0  # time.monotonic() at publish; 0 for changes read back
    cohort: Cohort | None = None
    """Set for a change only a rollout's cohort receives; None: everyone."""

    def reaches(self, client_id: str) -> bool:
        """Whether a watcher named ``client_id`` receives this change."""
        return self.cohort is None or self.cohort.contains(client_id)

    def for_audience(self, reveal_keys: bool) -> bytes:
        """The bytes a watcher of this audience receives."""
        return self.worker_bytes if reveal_keys else self.admin_bytes


@dataclass(eq=False)
class Watcher:
    """One WatchConfig stream."""

    client_id: str
    peer: str
    actor: str
    stages: frozenset[StageType]
    reveal_keys: bool
    connected_since: datetime
    client_version: str = ""
    """What the client sent in WatchConfigRequest.client_version ("" from older ones)."""
    cohort_id: str = ""
    """The client id rollout cohorts are computed from: the one the client sent, never
    the peer address shown when it sent none (such a client stays on the stable side,
    as its GetActiveConfig calls without a client_id do)."""
    last_revision: int = 0
    """The newest revision written to the stream (a snapshot, a change or a heartbeat's
    head): what ListWatchers reports as delivered."""
    position: int = 0
    """The revision the stream's start state (snapshot or missed changes) reached; only
    newer changes are queued."""
    pending: dict[StageType, EncodedChange] = field(default_factory=dict)
    wakeup: asyncio.Event = field(default_factory=asyncio.Event)

    def offer(self, change: EncodedChange) -> None:
        """Queue a change, replacing an older pending change of the same stage."""
        if (
            change.stage_type in self.stages
            and change.revision > self.position
            and change.reaches(self.cohort_id)
        ):
            self.pending[change.stage_type] = change
            self.wakeup.set()

    def take_pending(self) -> list[EncodedChange]:
        """The pending changes in revision order, emptying the queue."""
        changes = sorted(self.pending.values(), key=lambda c: c.revision)
        self.pending.clear()
        self.wakeup.clear()
        return changes


class WatchEncoder(Protocol):
    """Turns what a WatchConfig stream carries into the bytes written to it."""

    def change(self, change: ConfigChange, *, reveal_keys: bool) -> bytes:
        """One committed change, for workers (``reveal_keys``) or admins (masked)."""
        ...

    def snapshot(
        self, revision: int, configs: Sequence[StageConfig], *, reveal_keys: bool
    ) -> bytes:
        """Every watched stage's config at ``revision``."""
        ...

    def heartbeat(self, head_revision: int, server_time: datetime) -> bytes:
        """Nothing new up to ``head_revision`` (the same bytes for both audiences)."""
        ...


class Broadcaster:
    """Holds the watchers and the window of recent changes; fed by the service."""

    def __init__(
        self,
        service: ConfigService,
        *,
        encoder: WatchEncoder,
        heartbeat_seconds: float,
        retained_changes: int = DEFAULT_RETAINED_CHANGES,
        send_timeout_seconds: float = DEFAULT_SEND_TIMEOUT_SECONDS,
    ) -> None:
        self._service = service
        self._encoder = encoder
        self._heartbeat_seconds = heartbeat_seconds
        self._send_timeout = send_timeout_seconds
        self._recent: collections.deque[EncodedChange] = collections.deque(maxlen=retained_changes)
        self._watchers: set[Watcher] = set()
        self._heartbeat_cache: tuple[float, int, bytes] = (0.0, -1, b"")
        self._closing = asyncio.Event()
        self._changes_encoded = 0
        self.on_delivered: Callable[[float], None] | None = None
        """Called with commit→write seconds after each live change reaches a stream."""
        self._watchers_dropped = 0
        service.add_listener(self.publish)

    async def load_recent(self) -> None:
        """Fill the resume window from the revision log (at start), so clients that were
        connected before a restart resume with exactly what they missed."""
        head = self._service.head_revision
        maxlen = self._recent.maxlen or DEFAULT_RETAINED_CHANGES
        store = self._service.repository
        entries = await store.log_since(max(0, head - maxlen))
        ids = {e.rollout_id for e in entries if e.rollout_id is not None}
        rollouts = await store.rollouts_by_id(ids) if ids else {}
        self._recent.clear()
        for entry in entries:
            if entry.revision <= head:
                config = self._service.config_at(entry)
                record = rollouts.get(entry.rollout_id) if entry.rollout_id else None
                change = ConfigChange(entry.revision, config, entry.reason, entry.audience, record)
                self._recent.append(self._encode(change))

    @property
    def watchers(self) -> list[Watcher]:
        """The connected watchers (for ListWatchers and metrics)."""
        return list(self._watchers)

    @property
    def changes_encoded(self) -> int:
        """How many committed changes were encoded: one per change, whatever the number
        of watchers (for metrics, and the proof that fan-out does not re-encode)."""
        return self._changes_encoded

    @property
    def watchers_dropped(self) -> int:
        """How many watchers were dropped for a write slower than the send timeout."""
        return self._watchers_dropped

    def record_drop(self) -> None:
        """Count a watcher dropped by the transport for a slow write."""
        self._watchers_dropped += 1

    def publish(self, change: ConfigChange) -> None:
        """Encode a committed change once and hand it to every interested watcher."""
        encoded = self._encode(change, time.monotonic())
        self._changes_encoded += 1
        self._recent.append(encoded)
        for watcher in self._watchers:
            watcher.offer(encoded)

    def _encode(self, change: ConfigChange, committed_at: float = 0.0) -> EncodedChange:
        """Serialize a change once per audience."""
        return EncodedChange(
            change.revision,
            change.config.stage_type,
            self._encoder.change(change, reveal_keys=True),
            self._encoder.change(change, reveal_keys=False),
            committed_at,
            _cohort_of(change.audience, change.rollout),
        )

    def close(self) -> None:
        """End every stream (graceful shutdown): clients move to another replica at once."""
        self._closing.set()
        for watcher in self._watchers:
            watcher.wakeup.set()

    def _heartbeat(self) -> bytes:
        # One encoding per second at most, shared by every watcher.
        now = time.monotonic()
        cached_at, cached_head, cached = self._heartbeat_cache
        head = self._service.head_revision
        if now - cached_at < 1.0 and cached_head == head:
            return cached
        encoded = self._encoder.heartbeat(head, datetime.now(UTC))
        self._heartbeat_cache = (now, head, encoded)
        return encoded

    def _missed_since(
        self, revision: int, stages: frozenset[StageType], client_id: str
    ) -> list[EncodedChange] | None:
        """The changes after ``revision`` from the window, or None when the window does
        not reach back that far (the caller then sends a snapshot)."""
        head = self._service.head_revision
        if revision > head:
            return None
        if revision == head:
            return []
        # Revisions in the window are contiguous; if its first is past revision + 1,
        # something the client missed is gone and only a snapshot is safe.
        if not self._recent or self._recent[0].revision > revision + 1:
            return None
        return [
            c
            for c in self._recent
            if c.revision > revision and c.stage_type in stages and c.reaches(client_id)
        ]

    async def watch(
        self,
        *,
        stages: Sequence[StageType],
        resume_revision: int | None,
        client_id: str,
        peer: str,
        actor: str,
        reveal_keys: bool,
        client_version: str = "",
        cohort_id: str | None = None,
    ) -> AsyncGenerator[bytes, None]:
        """The serialized messages of one WatchConfig stream, until the client leaves or
        the server shuts down. The caller writes each with a bound (``send_timeout``)."""
        watcher = Watcher(
            client_id=client_id,
            peer=peer,
            actor=actor,
            stages=frozenset(stages or StageType),
            reveal_keys=reveal_keys,
            connected_since=datetime.now(UTC),
            client_version=client_version,
            cohort_id=client_id if cohort_id is None else cohort_id,
        )
        if resume_revision is not None and resume_revision > self._service.head_revision:
            # This replica is behind the client (it last talked to another one): catch
            # up first, so the client is never handed a state older than it holds.
            await self._service.catch_up()
        # Registering and reading the start state happen with no await in between, so
        # no change can fall between the snapshot (or the missed list) and the queue.
        self._watchers.add(watcher)
        try:
            missed = (
                self._missed_since(resume_revision, watcher.stages, watcher.cohort_id)
                if resume_revision is not None
                else None
            )
            head = self._service.head_revision
            first: list[tuple[bytes, int]]
            if missed is None:
                stages = sorted(watcher.stages)
                revision, configs = self._service.snapshot(stages, watcher.cohort_id)
                snapshot = self._encoder.snapshot(revision, configs, reveal_keys=reveal_keys)
                first = [(snapshot, revision)]
            else:
                first = [(c.for_audience(reveal_keys), c.revision) for c in missed]
                # A heartbeat right away tells the client it is at the head now.
                first.append((self._heartbeat(), head))
            watcher.position = head
            for message, revision in first:
                yield message
                # The generator resumes only once the caller wrote the message.
                watcher.last_revision = max(watcher.last_revision, revision)
            while not self._closing.is_set():
                if not watcher.pending:
                    # asyncio.timeout rather than wait_for: wait_for wraps the wait in a
                    # new Task on every wake-up, which py-spy showed as a large share of
                    # the fan-out's CPU with thousands of watchers (scripts/bench).
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(self._heartbeat_seconds):
                            await watcher.wakeup.wait()
                    if self._closing.is_set():
                        break
                changes = watcher.take_pending()
                if not changes:
                    # Nothing pending: every change up to the head has been written, so
                    # the heartbeat's head is a revision the client is current at.
                    head = self._service.head_revision
                    yield self._heartbeat()
                    watcher.last_revision = max(watcher.last_revision, head)
                    continue
                for change in changes:
                    yield change.for_audience(reveal_keys)
                    watcher.last_revision = max(watcher.last_revision, change.revision)
                    if self.on_delivered is not None and change.committed_at:
                        self.on_delivered(time.monotonic() - change.committed_at)
        finally:
            self._watchers.discard(watcher)

    @property
    def send_timeout(self) -> float:
        """How long one write to a stream may take before the watcher is dropped."""
        return self._send_timeout


def _cohort_of(audience: str, rollout: RolloutRecord | None) -> Cohort | None:
    """Who receives a change of ``audience``: the rollout's cohort for "canary", else
    everyone (None). A canary change whose rollout is unknown reaches nobody's wrong
    side: it is treated as reaching only an empty cohort."""
    if audience != Audience.CANARY.value:
        return None
    if rollout is None:
        return Cohort(StageType.POEM, 0, frozenset())
    return rollout.cohort
