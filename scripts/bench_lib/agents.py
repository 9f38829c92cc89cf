"""Scenario f: one stream per host (``stageconfig-agent``) next to a ConfigClient per
worker process and etcd.

- worker-side cost: RSS and threads one attached process gains, against one direct
  ConfigClient, in fresh spawned processes of the same run; the attached hot read;
- fan-out: an UpdateConfig acknowledged → every reader's ``get()`` returns the new
  revision, with ``readers`` attached readers spread over ``hosts`` agents (one agent
  per simulated host: its own segment directory), against as many direct ConfigClients;
  the server's streams (ListWatchers) and RSS per reader while they are held.

etcd with as many watchers is scenario c's own code (``scenarios.fanout``), run here in
the same run so the ratio compares like with like.
"""

from __future__ import annotations

import contextlib
import math
import random
import shutil
import subprocess
import sys
import tempfile
import time
from array import array
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from multiprocessing.context import SpawnContext
from pathlib import Path
from typing import Any

import grpc

from bench_lib.agent_workers import CostSpec, ReaderSpec, process_cost, readers
from bench_lib.processes import ChildServer
from bench_lib.scenarios import (
    NS_PER_MS,
    WARMUP_WRITES,
    CapacityResult,
    Child,
    FanoutResult,
    Fleet,
    _spawn,
)
from bench_lib.stats import Summary, summarize
from bench_lib.wire import pb

GAP_S = (1.0, 2.0)
"""Seconds between f's writes (every system alike): after each update every worker
process reports what it applied (1,000 reports, one ReportStatus per agent and flush
through the agents, one each from the direct clients); spaced, an update's reports do
not land inside the next update's fan-out. Production updates are minutes apart."""


@dataclass(slots=True)
class WorkerCost:
    """What one worker process gains from its client."""

    attached_rss_kib: int
    attached_threads: int
    attached_grpc: bool
    direct_rss_kib: int
    direct_threads: int
    hot_get: Summary | None
    hot_batch_mean_ns: float


@dataclass(slots=True)
class AgentFanoutResult:
    """Write acknowledged → every reader returned it, per update."""

    mode: str
    """"agent" (attached readers over ``hosts`` agents), "agent-silent" (the same, the
    readers never reporting) or "direct" (ConfigClients)."""
    readers: int
    hosts: int
    processes: int
    ready: int
    updates: int
    all_applied_ms: Summary
    per_reader_p50_ms: float
    server_streams: int
    server_rss_per_reader_kib: float
    """While the readers are held: their agents' streams and every reader's fleet record."""
    server_rss_streams_per_reader_kib: float
    """The agents' streams alone (before any reader attached), per reader."""
    timeouts: int


@contextmanager
def agents(target: str, hosts: int) -> Iterator[list[Path]]:
    """``hosts`` agents of ``target``, each in its own tmpfs directory; their segments."""
    root = Path(tempfile.mkdtemp(prefix="stageconfig-bench-hosts-", dir="/dev/shm"))
    procs: list[subprocess.Popen[bytes]] = []
    try:
        from stageconfig._segment import segment_paths

        command = [str(Path(sys.executable).parent / "stageconfig-agent"), "--target", target]
        segments = []
        for i in range(hosts):
            directory = root / f"host-{i}"
            directory.mkdir()
            procs.append(
                subprocess.Popen(
                    [*command, "--dir", str(directory)],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            )
            segments.append(segment_paths(target, directory).segment)
        deadline = time.monotonic() + 60
        while not all(s.exists() for s in segments):
            if time.monotonic() > deadline:
                raise TimeoutError("the agents did not create their segments in 60 s")
            time.sleep(0.05)
        yield segments
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
        shutil.rmtree(root, ignore_errors=True)


def worker_cost(target: str, hot_calls: int) -> WorkerCost:
    """One attached process and one direct client, each in a fresh process."""
    ctx = _spawn()
    with agents(target, 1) as (segment,):
        attached = _one(ctx, CostSpec("attached", target, str(segment), hot_calls))
    direct = _one(ctx, CostSpec("direct", target, ""))
    hot = None
    if "latencies" in attached:
        samples = array("q")
        samples.frombytes(attached["latencies"])
        hot = summarize(samples)
    return WorkerCost(
        attached_rss_kib=attached["rss_added_kib"],
        attached_threads=attached["os_threads_added"],
        attached_grpc=attached["grpc_imported"],
        direct_rss_kib=direct["rss_added_kib"],
        direct_threads=direct["os_threads_added"],
        hot_get=hot,
        hot_batch_mean_ns=float(attached.get("batch_mean_ns", float("nan"))),
    )


def _one(ctx: SpawnContext, spec: CostSpec) -> dict[str, Any]:
    child = Child(ctx, process_cost, spec)
    try:
        message = child.recv(120)
    finally:
        child.close()
    result: dict[str, Any] = message[1]
    return result


class _ReaderFleet(Fleet):
    """Reader processes in ``Fleet``'s protocol (ready, applied, stop)."""

    def __init__(self, ctx: SpawnContext, specs: list[ReaderSpec]) -> None:
        self.children = [Child(ctx, readers, spec) for spec in specs]
        self.total = sum(s.count for s in specs)
        self._applied: dict[int, list[bytes]] = {}
        self.ready = 0
        self.failed = 0


def _watcher_count(target: str) -> int:
    with grpc.insecure_channel(target) as channel:
        call = channel.unary_unary(
            "/stageconfig.v1.StageConfigService/ListWatchers",
            request_serializer=pb.ListWatchersRequest.SerializeToString,
            response_deserializer=pb.ListWatchersResponse.FromString,
        )
        return len(call(pb.ListWatchersRequest(), timeout=30).watchers)


def reader_fanout(
    *,
    mode: str,
    server: ChildServer,
    write: Callable[[int], int],
    readers_total: int,
    hosts: int,
    processes: int,
    updates: int,
) -> AgentFanoutResult:
    """``updates`` writes, each awaited until every reader returned it from ``get()``."""
    ctx = _spawn()
    rss_before = server.rss_kib()
    share, extra = divmod(readers_total, processes)
    counts = [share + (1 if i < extra else 0) for i in range(processes)]
    with contextlib.ExitStack() as stack:
        segments: list[Path] = []
        rss_streams = rss_before
        if mode != "direct":
            segments = stack.enter_context(agents(server.address, hosts))
            deadline = time.monotonic() + 60
            while _watcher_count(server.address) < hosts and time.monotonic() < deadline:
                time.sleep(0.1)
            time.sleep(2.0)
            rss_streams = server.rss_kib()
        specs = []
        for i, count in enumerate(counts):
            # Each process reads from the hosts in turn, so every host serves readers.
            mine = tuple(str(segments[(i + j) % len(segments)]) for j in range(len(segments)))
            kind = "direct" if mode == "direct" else "attached"
            specs.append(ReaderSpec(kind, server.address, mine, count, mode != "agent-silent"))
        fleet = _ReaderFleet(ctx, specs)
        all_applied: list[float] = []
        deliveries: list[float] = []
        timeouts = 0
        try:
            ready, _failed = fleet.wait_ready(300)
            time.sleep(2.0)
            streams = _watcher_count(server.address)
            rss_held = server.rss_kib()
            for k in range(WARMUP_WRITES):
                with contextlib.suppress(TimeoutError):
                    fleet.wait_applied(write(updates + k), 60)
            for k in range(updates):
                revision = write(k)
                acked = time.monotonic_ns()
                try:
                    times = fleet.wait_applied(revision, 60)
                except TimeoutError:
                    timeouts += 1
                    continue
                all_applied.append((max(times) - acked) / NS_PER_MS)
                deliveries.extend((t - acked) / NS_PER_MS for t in times)
                time.sleep(random.uniform(*GAP_S))
        finally:
            fleet.stop()
    deliveries.sort()
    return AgentFanoutResult(
        mode=mode,
        readers=readers_total,
        hosts=readers_total if mode == "direct" else hosts,
        processes=processes,
        ready=ready,
        updates=updates,
        all_applied_ms=summarize(all_applied),
        per_reader_p50_ms=deliveries[len(deliveries) // 2] if deliveries else float("nan"),
        server_streams=streams,
        server_rss_per_reader_kib=(rss_held - rss_before) / max(1, ready),
        server_rss_streams_per_reader_kib=(
            (rss_streams - rss_before) / max(1, ready) if mode != "direct" else math.nan
        ),
        timeouts=timeouts,
    )


@dataclass(slots=True)
class AgentResults:
    """Everything scenario f measured (what it left out is None / empty)."""

    cost: WorkerCost | None = None
    fanout: list[AgentFanoutResult] = field(default_factory=list)
    etcd: FanoutResult | None = None
    """etcd with as many watchers as there are readers (scenario c's code, this run)."""
    capacity: CapacityResult | None = None
    """The server holding one stream per agent (``agent_capacity`` of them)."""


def _say(message: str) -> None:
    print(f"==> {message}", file=sys.stderr, flush=True)


def scenario(
    plan: Any,
    *,
    server: ChildServer,
    write: Callable[[int], int],
    etcd: ChildServer | None,
    etcd_writer: Any,
) -> AgentResults:
    """All of scenario f with ``plan``'s counts (``agent_*`` fields of the bench Plan)."""
    from bench_lib import scenarios

    results = AgentResults()
    # A fresh server process: RSS left by earlier scenarios is not a reader's.
    server.stop()
    server.start()
    _say("f: worker-side cost, attached vs direct")
    results.cost = worker_cost(server.address, plan.hot_client_calls)
    for mode, procs, count in (
        ("agent", plan.agent_reader_processes, plan.agent_readers),
        ("agent-silent", plan.agent_reader_processes, plan.agent_readers),
        ("direct", plan.direct_processes, plan.direct_readers),
    ):
        _say(f"f: fan-out to {count} readers, {mode}")
        results.fanout.append(
            reader_fanout(
                mode=mode,
                server=server,
                write=write,
                readers_total=count,
                hosts=plan.agent_hosts,
                processes=procs,
                updates=plan.agent_updates,
            )
        )
    if etcd is not None and etcd_writer is not None:
        _say(f"f: etcd with {plan.agent_readers} watchers")
        results.etcd = scenarios.fanout(
            system="etcd",
            server=etcd,
            write=etcd_writer.cycle,
            watchers_total=plan.agent_readers,
            processes=plan.fanout_processes,
            updates=plan.agent_updates,
            channel_base=6_000_000,
            gap_s=GAP_S,
        )
    _say(f"f: the server holding {plan.agent_capacity} agents")
    results.capacity = scenarios.capacity(
        system="stageconfig",
        server=server,
        write=write,
        watchers_total=plan.agent_capacity,
        processes=plan.capacity_processes,
        channel_base=7_000_000,
    )
    return results
