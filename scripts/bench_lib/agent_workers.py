"""Client processes of scenario f (one stream per host), one entry point each, spawned
(never forked) and talking to the orchestrator over a pipe, like ``workers``:

- ``process_cost``: → ("result", {...}): RSS and threads this process gained by
  attaching to an agent, or by starting a direct ConfigClient (``spec.mode``), over
  the same baseline (json, logging, pathlib and socket, which every worker process
  already holds, and ``import stageconfig`` with its types); in attached mode also the
  hot read, timer-corrected per call and as batch means.
- ``readers``: → ("ready", ok, failed), then ("applied", revision, times) each time
  every reader of the process returns a new revision from ``get()``;
  ← ("stop",) → ("result", {...}). Readers are AttachedClients of the segments named
  (one per simulated host), or direct ConfigClients; a sweep over them every
  ``SWEEP_SECONDS`` is what notices a new revision, the same way for both.

Times are ``time.monotonic_ns()`` (one clock for every process of the machine).
"""

from __future__ import annotations

import os
import sys
import threading
import time
from array import array
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

SWEEP_SECONDS = 0.001


def _rss_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


@dataclass(frozen=True, slots=True)
class CostSpec:
    """One process measuring what one client costs it."""

    mode: str
    """"attached" (stageconfig.attach of ``segment``) or "direct" (ConfigClient)."""
    target: str
    segment: str
    hot_calls: int = 0


def process_cost(conn: Connection, spec: CostSpec) -> None:
    """Measure one client's cost in this fresh process (see the module)."""
    # The baseline is a worker process before its config client: the standard modules
    # every worker already holds (a Celery child inherits them from its parent) and the
    # app's own `import stageconfig` with its types. What is measured is the client.
    import json  # noqa: F401
    import logging  # noqa: F401
    import pathlib  # noqa: F401
    import socket  # noqa: F401

    import stageconfig
    from stageconfig import StageType  # the app's own import: in the baseline

    assert stageconfig.StageConfig  # the types loaded, as in every app that uses them
    time.sleep(0.2)
    rss_before, threads_before = _rss_kib(), threading.active_count()
    tasks_before = len(os.listdir("/proc/self/task"))
    result: dict[str, Any] = {}
    client: Any
    if spec.mode == "attached":
        client = stageconfig.attach(spec.segment)
    else:
        client = stageconfig.ConfigClient(spec.target)
        client.start()
    client.wait_ready(30)
    for _ in range(1000):
        client.get(StageType.VOICE)
    time.sleep(0.5)  # let a direct client's threads settle (first report, heartbeats)
    result["rss_added_kib"] = _rss_kib() - rss_before
    result["threads_added"] = threading.active_count() - threads_before
    result["os_threads_added"] = len(os.listdir("/proc/self/task")) - tasks_before
    result["grpc_imported"] = "grpc" in sys.modules
    if spec.hot_calls:
        result.update(_hot(client, spec.hot_calls))
    client.close()
    conn.send(("result", result))


def _hot(client: Any, calls: int) -> dict[str, Any]:
    from stageconfig import StageType

    clock, get, stage = time.perf_counter_ns, client.get, StageType.VOICE
    overhead = min(_timer_pair(clock) for _ in range(1000))
    samples = array("q")
    for _ in range(calls):
        started = clock()
        get(stage)
        samples.append(max(0, clock() - started - overhead))
    batch_means = []
    for _ in range(max(1, calls // 1000)):
        started = clock()
        for _ in range(1000):
            get(stage)
        batch_means.append((clock() - started) / 1000)
    batch_means.sort()
    return {
        "latencies": samples.tobytes(),
        "batch_mean_ns": batch_means[len(batch_means) // 2],
        "timer_ns": overhead,
    }


def _timer_pair(clock: Any) -> int:
    started = clock()
    return int(clock() - started)


@dataclass(frozen=True, slots=True)
class ReaderSpec:
    """One process holding ``count`` readers."""

    mode: str
    """"attached" or "direct"."""
    target: str
    segments: tuple[str, ...]
    """Attached: the readers are spread over these segments (simulated hosts)."""
    count: int
    reports: bool = True
    """False: attached readers never report (the path's floor, for comparison)."""


def readers(conn: Connection, spec: ReaderSpec) -> None:
    """Hold the readers; report every revision once all of them return it."""
    import stageconfig
    from stageconfig import StageType

    if not spec.reports:  # the floor of the path: readers that never report
        from stageconfig._attached_reports import ReportSender

        ReportSender.maybe_send = lambda *a, **k: False  # type: ignore[method-assign]
    clients: list[Any] = []
    failed = 0
    for i in range(spec.count):
        if spec.mode == "attached":
            segment = spec.segments[i % len(spec.segments)]
            clients.append(stageconfig.AttachedClient(segment, report_interval_seconds=30))
        else:
            client = stageconfig.ConfigClient(spec.target)
            client.start()
            clients.append(client)
    for client in clients:
        try:
            client.wait_ready(120)
        except stageconfig.StageConfigError:
            failed += 1
    conn.send(("ready", len(clients) - failed, failed))
    stage = StageType.VOICE
    seen = [_revision(c, stage) for c in clients]
    pending: dict[int, array[int]] = {}
    clock = time.monotonic_ns
    while not conn.poll(0):
        for i, client in enumerate(clients):
            revision = _revision(client, stage)
            if revision != seen[i]:
                # Stamped after this reader's own get() returned it: the work of the readers
                # before it in the sweep counts against it.
                seen[i] = revision
                times = pending.setdefault(revision, array("q"))
                times.append(clock())
                if len(times) == len(clients):
                    conn.send(("applied", revision, pending.pop(revision).tobytes()))
        time.sleep(SWEEP_SECONDS)
    conn.recv()
    for client in clients:
        client.close()
    conn.send(("result", {"readers": len(clients)}))


def _revision(client: Any, stage: Any) -> int:
    try:
        return int(client.get(stage).revision)
    except Exception:  # not ready yet: nothing seen
        return -1
