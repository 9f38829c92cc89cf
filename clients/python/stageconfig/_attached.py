"""``AttachedClient``: a worker process's config, read from its host's
``stageconfig-agent`` through shared memory (``_segment``) instead of a stream of its own.

It has a ConfigClient's public surface (``get``, ``snapshot``, ``state``,
``wait_ready``, ``on_change``, ``on_state``, ``add_validator``, ``record_outcome``,
``applied_revision``), at a fraction of the cost: it imports no grpc and starts no
thread unless listeners are added.

- ``get()``: compares the segment's generation with the one it decoded last (one
  8-byte read) and answers from the cached snapshot; only a new generation is copied,
  checked and decoded (``_snapshot_codec``) — by the caller that noticed it.
- Validators run there too, on each stage's new config: a refused config is never
  used (the stage keeps its previous config), exactly as in a direct client; the NACK
  goes to the server in this process's next report.
- States: READY while the agent's heartbeat in the segment is fresh and the agent itself
  is READY; STALE when the agent is STALE, gone or restarting (the last snapshot is
  still served); CONNECTING before any snapshot; FATAL when the agent's server refused
  it for good.
- Reports: datagrams to the agent (``_attached_reports``), sent from ``record_outcome``
  and from the read that applied a new revision, never from a thread.
- Listeners: the first ``on_change`` / ``on_state`` starts one daemon thread that polls
  the generation every ``poll_seconds`` and announces changes and transitions.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from types import TracebackType

from stageconfig._attached_reports import ReportSender
from stageconfig._events import ChangeListener, ClientState, Listeners, StateChange, StateListener
from stageconfig._options import DEFAULT_REPORT_INTERVAL_SECONDS
from stageconfig._outcomes import OutcomeLedger
from stageconfig._segment import SegmentError, SegmentPaths, SegmentReader, segment_paths
from stageconfig._snapshot_codec import UnsupportedPayload, decode
from stageconfig._store import ConfigSnapshot, SnapshotStore
from stageconfig._types import StageConfig, StageType
from stageconfig._validation import Gate, Validator
from stageconfig.errors import (
    ClientClosedError,
    NotReadyError,
    StageConfigError,
    StageNotConfiguredError,
)

log = logging.getLogger("stageconfig.client")

DEFAULT_POLL_SECONDS = 0.01
"""How often the listener thread (only with listeners) looks for a new generation."""
_WAIT_STEP_SECONDS = 0.005


def _paths_for(target: str | Sequence[str] | os.PathLike[str]) -> SegmentPaths:
    if isinstance(target, os.PathLike) or (isinstance(target, str) and os.sep in target):
        segment = Path(target)
        return SegmentPaths(
            segment,
            segment.with_name(segment.name + ".lock"),
            segment.with_name(segment.name + ".sock"),
        )
    return segment_paths(target)


class AttachedClient:
    """A ConfigClient's surface over the host agent's shared memory (see the module)."""

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

    # -- the surface of ConfigClient ----------------------------------------------------

    def __repr__(self) -> str:
        current = self._store.current
        revision = current.revision if current is not None else None
        return f"AttachedClient(segment={str(self._paths.segment)!r}, revision={revision})"

    def __enter__(self) -> AttachedClient:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    @property
    def segment(self) -> Path:
        """The agent's segment this client reads."""
        return self._paths.segment

    @property
    def target(self) -> str:
        """Where this client's config comes from (the agent's segment)."""
        return f"agent:{self._paths.segment}"

    @property
    def stages(self) -> frozenset[StageType]:
        """The stages this process uses."""
        return self._stages

    @property
    def client_id(self) -> str:
        """The name this process reports under (default ``hostname/pid``)."""
        return self._client_id or f"{socket.gethostname()}/{os.getpid()}"

    @property
    def last_error(self) -> StageConfigError | None:
        """Why nothing is served yet (no agent, a payload this client cannot read), or
        the agent's own last error."""
        text = self._error
        if text is None and self._reader is not None:
            text = self._reader.note() or None
        return StageConfigError(text) if text else None

    @property
    def staleness_seconds(self) -> float:
        """Seconds since the agent's last heartbeat (``inf`` before any)."""
        if self._reader is None:
            return float("inf")
        beat = self._reader.beat()
        if beat.heartbeat_ns == 0:
            return float("inf")
        return max(0.0, (time.monotonic_ns() - beat.heartbeat_ns) / 1e9)

    @property
    def heartbeat_seconds(self) -> float:
        """The agent's heartbeat period into the segment."""
        return self._reader.beat().period if self._reader is not None else 0.0

    @property
    def state(self) -> ClientState:
        """The current state (see the module docstring)."""
        self._ensure_process()
        self._refresh()
        return self._derive_state()

    def start(self) -> AttachedClient:
        """Attach now if the agent's segment is there (else at the next call)."""
        self._ensure_process()
        self._refresh()
        return self

    def wait_ready(self, timeout: float | None = None) -> None:
        """Block until READY (polling the segment; no thread). NotReadyError at the
        deadline or when the agent is FATAL; ClientClosedError once closed."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            state = self.state
            if state is ClientState.READY:
                return
            if state is ClientState.CLOSED:
                raise ClientClosedError("the client was closed")
            if state is ClientState.FATAL:
                raise NotReadyError(f"the stageconfig agent was refused: {self.last_error}")
            if deadline is not None and time.monotonic() >= deadline:
                raise NotReadyError(self._not_ready_message(timeout))
            time.sleep(_WAIT_STEP_SECONDS)

    def get(self, stage: StageType | str) -> StageConfig:
        """The stage's config, from memory (see ConfigClient.get)."""
        if type(stage) is not StageType:
            stage = StageType(stage)
        reader = self._reader
        if reader is None or reader.words[2] != self._generation:
            self._refresh()
        configs = self._configs
        if configs is not None:
            config = configs.get(stage)
            if config is not None:
                return config
        return self._missing(stage)

    def snapshot(self) -> ConfigSnapshot:
        """Every used stage's config at one revision (NotReadyError before any)."""
        self._refresh()
        if self._closed:
            raise ClientClosedError("the client was closed")
        current = self._store.current
        if current is None:
            raise NotReadyError(self._not_ready_message(None))
        return current

    def on_change(self, listener: ChangeListener) -> Callable[[], None]:
        """Call ``listener`` with every change of this process's config (from the
        listener thread, or from the call that noticed it first)."""
        remove = self._listeners.add_change(listener)
        self._start_thread()
        return remove

    def on_state(self, listener: StateListener) -> Callable[[], None]:
        """Call ``listener`` with every state transition (noticed by the listener
        thread within ``poll_seconds``)."""
        remove = self._listeners.add_state(listener)
        self._start_thread()
        return remove

    def add_validator(self, validator: Validator) -> Callable[[], None]:
        """Run ``validator(config)`` on every new config of a stage before this process
        uses it; raising refuses it (the stage keeps its previous config; the NACK goes
        to the server through the agent)."""
        return self._gate.add(validator)

    @property
    def applied_revision(self) -> int:
        """The newest revision this process applied (``_validation``'s rule)."""
        self._refresh()
        current = self._store.current
        if current is None:
            return 0
        return self._gate.applied_revision(current.revision, current.configs)

    @property
    def outcomes_dropped(self) -> int:
        """Task outcomes recorded but never handed to the agent."""
        return self._ledger.dropped + self._reports.dropped

    @property
    def reports_sent(self) -> int:
        """Report datagrams the agent's socket took from this process."""
        return self._reports.sent

    def record_outcome(
        self,
        stage: StageType | str,
        ok: bool,
        cause: str | None = None,
        duration_seconds: float | None = None,
        *,
        retried: bool = False,
        revision: int | None = None,
    ) -> None:
        """Count one task run with ``stage``'s config (see ConfigClient.record_outcome);
        hands a report to the agent when the report interval has elapsed."""
        self._ensure_process()
        if type(stage) is not StageType:
            stage = StageType(stage)
        if stage not in self._stages:
            raise StageNotConfiguredError(stage, f"this client does not use stage {stage}")
        if revision is None:
            config = (self._configs or {}).get(stage)
            revision = config.revision if config is not None else 0
        elif revision < 0:
            raise ValueError("revision must be >= 0")
        self._ledger.record(
            stage, revision, ok=bool(ok), retried=retried, cause=cause,
            duration_seconds=duration_seconds,
        )  # fmt: skip
        self._report()

    def close(self) -> None:
        """Detach: stop the listener thread, hand the last outcomes to the agent.
        Idempotent."""
        with self._lock:
            if self._closed:
                return
            if len(self._ledger):
                self._report(force=True)
            self._closed = True
            self._configs = None
        self._stop.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(5)
        self._reports.close()
        self._publish_state()

    # -- internals -------------------------------------------------------------------------

    def _missing(self, stage: StageType) -> StageConfig:
        if self._closed:
            raise ClientClosedError("the client was closed")
        if stage not in self._stages:
            watched = ", ".join(sorted(self._stages))
            raise StageNotConfiguredError(
                stage, f"this client does not use stage {stage} (it uses {watched})"
            )
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
            if reader is None or reader.generation == self._generation:
                return
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


def attach(
    target: str | Sequence[str] | os.PathLike[str],
    *,
    stages: Iterable[StageType | str] | None = None,
    client_id: str | None = None,
    report_interval_seconds: float = DEFAULT_REPORT_INTERVAL_SECONDS,
) -> AttachedClient:
    """Attach to this host's ``stageconfig-agent`` of ``target`` (the targets the agent
    watches, or its segment's path) and return the started client."""
    return AttachedClient(
        target, stages=stages, client_id=client_id, report_interval_seconds=report_interval_seconds
    ).start()
