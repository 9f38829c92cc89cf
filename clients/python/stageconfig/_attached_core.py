"""The machinery behind ``AttachedClient`` (``_attached``): the segment's mapping, the
snapshot this process uses (decoded once per generation, validated stage by stage),
the derived state, the reports to the agent and the optional listener thread.

Kept apart from the public surface so each stays one sitting long; see ``_attached``
for the behaviour.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Iterable, Sequence
from pathlib import Path

from stageconfig._attached_reports import ReportSender
from stageconfig._events import ClientState, Listeners, StateChange
from stageconfig._options import DEFAULT_REPORT_INTERVAL_SECONDS
from stageconfig._outcomes import OutcomeLedger
from stageconfig._segment import SegmentError, SegmentPaths, SegmentReader, segment_paths
from stageconfig._snapshot_codec import UnsupportedPayload, decode
from stageconfig._store import ConfigSnapshot, SnapshotStore
from stageconfig._surface import unserved_stage
from stageconfig._types import StageConfig, StageType
from stageconfig._validation import Gate
from stageconfig.errors import (
    ClientClosedError,
    NotReadyError,
    StageConfigError,
    StageNotConfiguredError,
)

log = logging.getLogger("stageconfig.client")

DEFAULT_POLL_SECONDS = 0.01
"""How often the listener thread (only with listeners) looks for a new generation."""

_decoded: dict[int, tuple[int, ConfigSnapshot]] = {}
"""The newest snapshot decoded in this process, per segment (inode): several clients of
one segment in a process decode each generation once (snapshots are immutable)."""


def _paths_for(target: str | Sequence[str] | os.PathLike[str]) -> SegmentPaths:
    if isinstance(target, os.PathLike) or (isinstance(target, str) and os.sep in target):
        segment = Path(target)
        return SegmentPaths(
            segment,
            segment.with_name(segment.name + ".lock"),
            segment.with_name(segment.name + ".sock"),
        )
    return segment_paths(target)


class AttachedCore:
    """The state and internals of an attached client (see the module)."""

    def __init__(
        self,
        target: str | Sequence[str] | os.PathLike[str],
        *,
        stages: Iterable[StageType | str] | None = None,
        client_id: str | None = None,
        report_interval_seconds: float = DEFAULT_REPORT_INTERVAL_SECONDS,
        poll_seconds: float = DEFAULT_POLL_SECONDS,
    ) -> None:
        self._paths = _paths_for(target)
        self._client_id = client_id
        self._stages = frozenset(StageType(s) for s in stages) if stages else frozenset(StageType)
        self._store = SnapshotStore(self._stages)
        self._gate = Gate()
        self._ledger = OutcomeLedger()
        self._reports = ReportSender(self._paths.socket, self.client_id, report_interval_seconds)
        self._listeners = Listeners()
        self._poll_seconds = poll_seconds
        self._reader: SegmentReader | None = None
        self._generation = -1
        self._configs: dict[StageType, StageConfig] | None = None
        self._error: str | None = None
        self._closed = False
        self._init_process()

    def _init_process(self) -> None:
        self._pid = os.getpid()
        self._lock = threading.RLock()
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._state = ClientState.CONNECTING

    def _ensure_process(self) -> None:
        """In a forked child: fresh locks, its own reports; the mapping and the
        snapshot are kept (the segment is shared memory)."""
        if self._pid != os.getpid():
            self._init_process()
            self._listeners.reset_after_fork()
            self._gate.reset_after_fork()
            self._ledger.reset_after_fork()
            self._reports.reset_after_fork(self.client_id)
            if self._listeners_present():
                self._start_thread()

    @property
    def client_id(self) -> str:
        """The name this process reports under (default ``hostname/pid``)."""
        return self._client_id or f"{socket.gethostname()}/{os.getpid()}"

    @property
    def target(self) -> str:
        """Where this client's config comes from (the agent's segment)."""
        return f"agent:{self._paths.segment}"

    @property
    def last_error(self) -> StageConfigError | None:
        """Why nothing is served yet (no agent, a payload this client cannot read), or
        the agent's own last error."""
        text = self._error
        if text is None and self._reader is not None:
            text = self._reader.note() or None
        return StageConfigError(text) if text else None

    def _missing(self, stage: StageType) -> StageConfig:
        if self._closed:
            raise ClientClosedError("the client was closed")
        if stage not in self._stages:
            raise unserved_stage(stage, self._stages, "use")
        current = self._store.current
        if current is None:
            raise NotReadyError(self._not_ready_message(None))
        raise StageNotConfiguredError(
            stage, f"stage {stage} has no config at revision {current.revision} of {self.target}"
        )

    def _open(self) -> SegmentReader | None:
        try:
            self._reader = SegmentReader(self._paths.segment)
        except FileNotFoundError:
            self._error = f"no stageconfig agent has published at {self._paths.segment} yet"
        except SegmentError as exc:
            self._error = str(exc)
        return self._reader

    def _refresh(self) -> None:
        """Take the segment's newest generation if it moved: copy, check, decode,
        validate each changed stage, swap, tell the listeners and the agent."""
        self._ensure_process()
        with self._lock:
            if self._closed:
                return
            reader = self._reader or self._open()
            if reader is None:
                return
            generation = reader.generation
            if generation == self._generation:
                return
            shared = _decoded.get(reader.inode)
            if shared is not None and shared[0] == generation:
                published = shared[1]  # another client of this process decoded it
            else:
                try:
                    read = reader.read()
                except SegmentError as exc:
                    self._error = str(exc)
                    return
                if read is None:
                    return
                generation, payload = read
                try:
                    published = decode(payload)
                except UnsupportedPayload as exc:
                    self._error = str(exc)
                    self._generation = generation  # not again on every get()
                    return
                _decoded[reader.inode] = (generation, published)
            self._generation = generation
            self._error = None
            update = self._store.replace(
                published.revision,
                self._admitted(published),
                published.source,
                keep=self._refused_now(published),
            )
            self._configs = dict(update.snapshot.configs)
            self._listeners.publish_change(update)
            self._report()

    def _admitted(self, published: ConfigSnapshot) -> list[StageConfig]:
        current = self._store.current
        taken = []
        for stage in self._stages:
            config = published.configs.get(stage)
            held = current.configs.get(stage) if current is not None else None
            if config is not None and self._gate.admit(config, held):
                taken.append(config)
        return taken

    def _refused_now(self, published: ConfigSnapshot) -> list[StageType]:
        refusals = self._gate.refusals
        return [
            stage
            for stage, config in published.configs.items()
            if stage in refusals and refusals[stage].revision == config.revision
        ]

    def _report(self, force: bool = False) -> None:
        current = self._store.current
        if current is None:
            return
        self._reports.maybe_send(
            ledger=self._ledger,
            applied_revision=self._gate.applied_revision(current.revision, current.configs),
            configs=current.configs,
            stages=self._stages,
            refusals=self._gate.refusals,
            force=force,
        )

    def _derive_state(self) -> ClientState:
        if self._closed:
            return ClientState.CLOSED
        reader = self._reader
        if reader is None:
            return ClientState.CONNECTING
        beat = reader.beat()
        if beat.state == "FATAL":
            return ClientState.FATAL
        if self._store.current is None:
            return ClientState.CONNECTING
        fresh = time.monotonic_ns() - beat.heartbeat_ns <= beat.stale_after * 1e9
        if fresh and beat.state == "READY":
            return ClientState.READY
        if not fresh:
            self._reopen_if_replaced(reader)
        return ClientState.STALE

    def _reopen_if_replaced(self, reader: SegmentReader) -> None:
        """A segment file removed and made anew (a cleaned /dev/shm) is a new mapping."""
        try:
            replaced = os.stat(self._paths.segment).st_ino != reader.inode
        except OSError:
            return
        if replaced:
            with self._lock:
                self._reader, self._generation = None, -1
            reader.close()

    def _not_ready_message(self, timeout: float | None) -> str:
        within = f" within {timeout:g} s" if timeout is not None else " yet"
        return (
            f"no config from the stageconfig agent at {self._paths.segment}{within} "
            f"(state {self._derive_state()}; last error: {self.last_error or 'none'})"
        )

    def _listeners_present(self) -> bool:
        return bool(self._listeners._change or self._listeners._state)

    def _start_thread(self) -> None:
        with self._lock:
            if self._thread is None and not self._closed:
                self._thread = threading.Thread(
                    target=self._poll, name="stageconfig-attached", daemon=True
                )
                self._thread.start()

    def _poll(self) -> None:
        while not self._stop.wait(self._poll_seconds):
            try:
                self._refresh()
                self._publish_state()
                with self._lock:
                    if not self._closed:
                        self._report()  # due outcomes go out even while no task runs
            except Exception:  # a listener thread must outlive any one bad read
                log.exception("stageconfig: reading the agent's segment failed")

    def _publish_state(self) -> None:
        def transition() -> StateChange | None:
            state = self._derive_state()
            previous, self._state = self._state, state
            if state is previous:
                return None
            return StateChange(previous, state, self.last_error)

        self._listeners.publish_state(transition)
