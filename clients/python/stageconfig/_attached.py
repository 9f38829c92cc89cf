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

import os
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

from stageconfig._attached_core import AttachedCore
from stageconfig._events import ChangeListener, ClientState, StateListener
from stageconfig._options import DEFAULT_REPORT_INTERVAL_SECONDS
from stageconfig._store import ConfigSnapshot
from stageconfig._surface import ClientSurface, record_checked
from stageconfig._types import StageConfig, StageType
from stageconfig._validation import Validator
from stageconfig.errors import (
    ClientClosedError,
    NotReadyError,
)

_WAIT_STEP_SECONDS = 0.005
"""How often ``wait_ready`` looks again (it polls: no thread)."""


class AttachedClient(AttachedCore, ClientSurface):
    """A ConfigClient's surface over the host agent's shared memory (see the module).

    ::

        client = stageconfig.attach("config.internal:50051")  # the agent's targets
        poem = client.get(StageType.POEM)                    # < 1 µs, no network

    Arguments:
        target: the targets the agent watches (as given to it: ``host:port``, or several
            with commas) — the segment's name derives from them and the user id — or
            the segment's path.
        stages: the stages this process uses (default: all four).
        client_id: the name this process reports under (default ``hostname/pid``).
        report_interval_seconds: how often outcomes are handed to the agent at most
            (and the interval the server is told).
        poll_seconds: the listener thread's period (only with listeners).
    """

    # -- the surface of ConfigClient ----------------------------------------------------

    def __repr__(self) -> str:
        current = self._store.current
        revision = current.revision if current is not None else None
        return f"AttachedClient(segment={str(self._paths.segment)!r}, revision={revision})"

    @property
    def segment(self) -> Path:
        """The agent's segment this client reads."""
        return self._paths.segment

    @property
    def stages(self) -> frozenset[StageType]:
        """The stages this process uses."""
        return self._stages

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
        record_checked(
            self._ledger, stage, ok,
            stages=self._stages, configs=self._configs, verb="use", cause=cause,
            duration_seconds=duration_seconds, retried=retried, revision=revision,
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
