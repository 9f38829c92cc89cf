"""The five scenarios, each driving client processes against servers this run started.

The orchestrator is plain synchronous code: it writes (UpdateConfig, etcd Put) through
sync grpc channels and timestamps the acknowledgement with ``time.monotonic_ns()``, the
clock the watcher processes stamp "applied" with.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import random
import time
from array import array
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, wait
from multiprocessing.context import SpawnContext, SpawnProcess
from pathlib import Path
from typing import Any

import grpc

from bench_lib import wire
from bench_lib.processes import ChildServer, cpu_seconds
from bench_lib.stats import Summary, summarize
from bench_lib.wire import etcd, pb
from bench_lib.workers import (
    HotReadSpec,
    UnarySpec,
    WatchSpec,
    hot_read,
    unary_load,
    watchers,
)

NS_PER_MS = 1e6
VOICES = ("jane", "alena", "filipp", "ermil", "zahar", "omazh")
"""SpeechKit voices the updates cycle through (the SpeechKit adapter needs no network)."""
SEED_KEY = "AQVN-bench-0000000000000000000000000000"
WARMUP_WRITES = 2


# -- child processes -----------------------------------------------------------------------


class Child:
    """A spawned client process and its end of the pipe."""

    def __init__(self, ctx: SpawnContext, target: Callable[..., None], spec: Any) -> None:
        self.conn, theirs = ctx.Pipe()
        self.process: SpawnProcess = ctx.Process(target=target, args=(theirs, spec), daemon=True)
        self.process.start()
        theirs.close()

    def recv(self, timeout: float) -> Any:
        """The next message, or TimeoutError."""
        if not self.conn.poll(timeout):
            raise TimeoutError(f"client process {self.process.pid} said nothing in {timeout} s")
        return self.conn.recv()

    def close(self, timeout: float = 30.0) -> None:
        """Wait for the exit (kill after ``timeout``)."""
        self.process.join(timeout)
        if self.process.is_alive():
            self.process.kill()
            self.process.join(5)
        self.conn.close()


class Fleet:
    """Watcher processes sharing ``total`` watchers."""

    def __init__(
        self,
        ctx: SpawnContext,
        *,
        system: str,
        target: str,
        total: int,
        processes: int,
        channel_base: int,
        reconnect: bool = False,
        wait_for_ready: bool = False,
    ) -> None:
        processes = max(1, min(processes, total))
        counts = [
            total // processes + (1 if i < total % processes else 0) for i in range(processes)
        ]
        self.children: list[Child] = []
        base = channel_base
        for count in counts:
            spec = WatchSpec(
                system, target, count, base, reconnect=reconnect, wait_for_ready=wait_for_ready
            )
            self.children.append(Child(ctx, watchers, spec))
            base += count
        self.total = total
        self._applied: dict[int, list[bytes]] = {}
        self.ready = 0
        self.failed = 0

    def _dispatch(self, message: Any, child: Child) -> Any:
        if message[0] == "applied":
            self._applied.setdefault(message[1], []).append(message[2])
            return None
        return message

    def _next(self, timeout: float) -> tuple[Child, Any]:
        by_conn = {child.conn: child for child in self.children}
        ready = wait(list(by_conn), timeout)
        if not ready:
            raise TimeoutError(f"no watcher process reported in {timeout:.0f} s")
        conn = ready[0]
        assert isinstance(conn, Connection)
        return by_conn[conn], conn.recv()

    def cpu_seconds(self) -> float:
        """CPU time of all the fleet's processes so far (the clients' side of the cost)."""
        return sum(cpu_seconds(child.process.pid or 0) for child in self.children)

    def wait_ready(self, timeout: float) -> tuple[int, int]:
        """Wait until every process has all its streams open (or failed)."""
        pending = set(range(len(self.children)))
        deadline = time.monotonic() + timeout
        while pending:
            child, message = self._next(max(0.1, deadline - time.monotonic()))
            if self._dispatch(message, child) is None:
                continue
            if message[0] == "ready":
                self.ready += message[1]
                self.failed += message[2]
                pending.discard(self.children.index(child))
        return self.ready, self.failed

    def wait_applied(self, revision: int, timeout: float) -> array[int]:
        """The "applied at" times of ``revision`` from every watcher (TimeoutError if some
        never apply it within ``timeout``)."""
        deadline = time.monotonic() + timeout
        while len(self._applied.get(revision, ())) < len(self.children):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                got = len(self._applied.get(revision, ()))
                raise TimeoutError(
                    f"revision {revision} reached {got}/{len(self.children)} processes"
                )
            child, message = self._next(remaining)
            self._dispatch(message, child)
        times = array("q")
        for chunk in self._applied.pop(revision):
            times.frombytes(chunk)
        return times

    def stop(self, timeout: float = 60.0) -> list[dict[str, Any]]:
        """Close every stream; each process's final report."""
        for child in self.children:
            child.conn.send(("stop",))
        results: list[dict[str, Any]] = []
        for child in self.children:
            deadline = time.monotonic() + timeout
            while True:
                message = child.recv(max(0.1, deadline - time.monotonic()))
                if message[0] == "result":
                    results.append(message[1])
                    break
            child.close()
        return results


def _spawn() -> SpawnContext:
    return multiprocessing.get_context("spawn")


# -- the writers ---------------------------------------------------------------------------


class StageconfigAdmin:
    """UpdateConfig / GetActiveConfig through a sync channel (waits for a restarted server)."""

    def __init__(self, target: str) -> None:
        self._channel = grpc.insecure_channel(target, options=wire.channel_options(-1))
        self._update = self._channel.unary_unary(
            wire.UPDATE_CONFIG,
            request_serializer=pb.UpdateConfigRequest.SerializeToString,
            response_deserializer=pb.UpdateConfigResponse.FromString,
        )
        self._get = self._channel.unary_unary(
            wire.GET_ACTIVE,
            request_serializer=pb.GetActiveConfigRequest.SerializeToString,
            response_deserializer=pb.GetActiveConfigResponse.FromString,
        )

    def update(self, model: str, api_key: str | None = None) -> int:
        """Store VOICE with ``model``; the committed revision."""
        request = pb.UpdateConfigRequest(
            stage_type=pb.STAGE_TYPE_VOICE,
            provider_kind=pb.PROVIDER_KIND_SPEECHKIT,
            model=model,
            comment="scripts/bench",
        )
        if api_key is not None:
            request.api_key = api_key
        response = self._update(request, timeout=30, wait_for_ready=True)
        revision: int = response.config.revision
        return revision

    def cycle(self, k: int) -> int:
        """The ``k``-th write of a fan-out: the next voice in turn; its revision."""
        return self.update(VOICES[k % len(VOICES)])

    def get_active_bytes(self) -> bytes:
        """GetActiveConfig(VOICE), serialized as the server sent it."""
        response = self._get(
            pb.GetActiveConfigRequest(stage_type=pb.STAGE_TYPE_VOICE),
            timeout=30,
            wait_for_ready=True,
        )
        data: bytes = response.SerializeToString()
        return data

    def close(self) -> None:
        """Close the channel."""
        self._channel.close()


class EtcdWriter:
    """KV.Put of the VOICE key with a change message of stageconfig's size."""

    def __init__(self, target: str, config: pb.StageConfig) -> None:
        self._channel = grpc.insecure_channel(target)
        self._put = self._channel.unary_unary(
            wire.ETCD_PUT,
            request_serializer=etcd.PutRequest.SerializeToString,
            response_deserializer=etcd.PutResponse.FromString,
        )
        self._config = config

    def value(self, model: str, revision: int) -> bytes:
        """The bytes stageconfig would push for this change (same fields, same size)."""
        config = pb.StageConfig()
        config.CopyFrom(self._config)
        config.model = model
        config.revision = revision
        message = pb.WatchConfigResponse(
            change=pb.Change(revision=revision, config=config, reason=pb.CHANGE_REASON_ADMIN_UPDATE)
        )
        data: bytes = message.SerializeToString()
        return data

    def cycle(self, k: int) -> int:
        """The ``k``-th write of a fan-out: the next voice in turn; its etcd revision."""
        return self.put(VOICES[k % len(VOICES)])

    def put(self, model: str) -> int:
        """Put the key; the etcd revision it committed at."""
        response = self._put(
            etcd.PutRequest(key=wire.ETCD_KEY, value=self.value(model, self._config.revision)),
            timeout=30,
            wait_for_ready=True,
        )
        revision: int = response.header.revision
        return revision

    def close(self) -> None:
        """Close the channel."""
        self._channel.close()


# -- a: hot read ---------------------------------------------------------------------------


@dataclass(slots=True)
class HotReadResult:
    """Per-call read cost, ns (timer-corrected)."""

    client: Summary | None
    client_batch_mean_ns: float | None
    client_error: str
    grpc: Summary
    db: Summary
    timer_ns: int


def _run_hot(ctx: SpawnContext, spec: HotReadSpec, timeout: float = 300.0) -> dict[str, Any]:
    child = Child(ctx, hot_read, spec)
    try:
        message = child.recv(timeout)
    finally:
        child.close()
    result: dict[str, Any] = message[1]
    return result


def _samples(data: bytes) -> array[int]:
    values = array("q")
    values.frombytes(data)
    return values


def hot_reads(
    *, target: str, database_url: str, secret: str, client_calls: int, rpc_calls: int, db_calls: int
) -> HotReadResult:
    """ConfigClient.get() vs GetActiveConfig per call vs the per-task DB read + decrypt."""
    ctx = _spawn()
    client: Summary | None = None
    batch_mean: float | None = None
    client_error = ""
    try:
        import stageconfig

        if not hasattr(stageconfig, "ConfigClient"):
            raise ImportError("stageconfig has no ConfigClient yet")
        result = _run_hot(ctx, HotReadSpec("client", client_calls, target=target))
        client = summarize(_samples(result["latencies"]))
        batch_mean = float(result["batch_mean_ns"])
    except (ImportError, TimeoutError, EOFError) as exc:
        client_error = f"ConfigClient not measured: {exc}"
    rpc = _run_hot(ctx, HotReadSpec("grpc", rpc_calls, target=target))
    db = _run_hot(ctx, HotReadSpec("db", db_calls, database_url=database_url, secret=secret))
    return HotReadResult(
        client=client,
        client_batch_mean_ns=batch_mean,
        client_error=client_error,
        grpc=summarize(_samples(rpc["latencies"])),
        db=summarize(_samples(db["latencies"])),
        timer_ns=int(rpc["timer_ns"]),
    )


# -- b: unary ------------------------------------------------------------------------------


@dataclass(slots=True)
class UnaryResult:
    """Closed-loop throughput and latency of one system at one concurrency."""

    system: str
    inflight: int
    rps: float
    """The median over rounds of completed calls per second."""
    latency_ms: Summary
    """Every call of every round."""
    errors: int
    server_cpu_us_per_call: float
    rounds_rps: list[float] = field(default_factory=list)


class _UnaryLoad:
    """The load processes of one system, kept across rounds."""

    def __init__(
        self,
        ctx: SpawnContext,
        system: str,
        server: ChildServer,
        inflight: int,
        processes: int,
        channels_per_process: int,
        warmup_s: float,
        duration_s: float,
    ) -> None:
        self.system, self.server, self.duration_s = system, server, duration_s
        self.warmup_s = warmup_s
        per_process = [
            inflight // processes + (1 if i < inflight % processes else 0) for i in range(processes)
        ]
        self.children = [
            Child(
                ctx,
                unary_load,
                UnarySpec(
                    system,
                    server.address,
                    count,
                    min(channels_per_process, count),
                    10_000 * (i + 1),
                    warmup_s,
                    duration_s,
                ),
            )
            for i, count in enumerate(per_process)
        ]
        self.latencies = array("q")
        self.errors = 0
        self.cpu_s = 0.0
        self.rounds_rps: list[float] = []

    def wait_ready(self) -> None:
        for child in self.children:
            child.recv(120)

    def round(self) -> None:
        """One measured window; its calls and the server's CPU are added up."""
        start_ns = time.monotonic_ns() + 200_000_000
        for child in self.children:
            child.conn.send(("go", start_ns))
        measure_from = start_ns + int(self.warmup_s * 1e9)
        _sleep_until(measure_from)
        cpu_before = self.server.cpu_seconds()
        _sleep_until(measure_from + int(self.duration_s * 1e9))
        self.cpu_s += self.server.cpu_seconds() - cpu_before
        calls = 0
        for child in self.children:
            _, result = child.recv(120)
            self.latencies.frombytes(result["latencies"])
            calls += len(result["latencies"]) // self.latencies.itemsize
            self.errors += result["errors"]
        self.rounds_rps.append(calls / self.duration_s)

    def close(self) -> None:
        for child in self.children:
            with contextlib.suppress(OSError):
                child.conn.send(("stop",))
            child.close()


def unary(
    *,
    systems: Sequence[tuple[str, ChildServer]],
    inflight: int,
    processes: int,
    channels_per_process: int,
    warmup_s: float,
    duration_s: float,
    rounds: int,
) -> list[UnaryResult]:
    """``inflight`` calls kept in flight against each server, spread over ``processes``,
    in ``rounds`` windows interleaved across the systems, so a burst of background load
    lands on one round of each system rather than on one system."""
    ctx = _spawn()
    loads = [
        _UnaryLoad(
            ctx, system, server, inflight, processes, channels_per_process, warmup_s, duration_s
        )
        for system, server in systems
    ]
    try:
        for load in loads:
            load.wait_ready()
        for _ in range(rounds):
            for load in loads:
                load.round()
    finally:
        for load in loads:
            load.close()
    results = []
    for load in loads:
        calls = len(load.latencies)
        ordered = sorted(load.rounds_rps)
        results.append(
            UnaryResult(
                system=load.system,
                inflight=inflight,
                rps=ordered[len(ordered) // 2],
                latency_ms=summarize(load.latencies).scaled(1 / NS_PER_MS),
                errors=load.errors,
                server_cpu_us_per_call=load.cpu_s * 1e6 / max(1, calls),
                rounds_rps=load.rounds_rps,
            )
        )
    return results


def _sleep_until(monotonic_ns: int) -> None:
    delay = (monotonic_ns - time.monotonic_ns()) / 1e9
    if delay > 0:
        time.sleep(delay)


# -- c: fan-out ----------------------------------------------------------------------------


@dataclass(slots=True)
class FanoutResult:
    """Write acknowledged → every watcher applied it, per update."""

    system: str
    watchers: int
    connected: int
    updates: int
    all_applied_ms: Summary
    """Per update: the last watcher's "applied at" minus the write's acknowledgement."""
    per_watcher_p50_ms: float
    """Median over every (update, watcher) delivery."""
    write_ms: Summary
    """The write's own round trip (UpdateConfig / Put), for context."""
    server_cpu_us_per_delivery: float
    client_cpu_us_per_delivery: float
    """The watcher processes' CPU per delivery (receive + decode), for context: on a
    small machine they share the cores with the server."""
    connect_s: float
    timeouts: int = 0
    error_kinds: dict[str, int] = field(default_factory=dict)


def _error_kinds(results: Sequence[dict[str, Any]]) -> dict[str, int]:
    kinds: dict[str, int] = {}
    for result in results:
        for kind, count in result.get("error_kinds", {}).items():
            kinds[kind] = kinds.get(kind, 0) + count
    return kinds


def fanout(
    *,
    system: str,
    server: ChildServer,
    write: Callable[[int], int],
    watchers_total: int,
    processes: int,
    updates: int,
    channel_base: int,
    gap_s: tuple[float, float] = (0.05, 0.2),
) -> FanoutResult:
    """``updates`` writes, each awaited until every one of ``watchers_total`` applied it."""
    ctx = _spawn()
    started = time.monotonic()
    fleet = Fleet(
        ctx,
        system="etcd" if system == "etcd" else "stageconfig",  # the floor speaks WatchConfig
        target=server.address,
        total=watchers_total,
        processes=processes,
        channel_base=channel_base,
    )
    all_applied: list[float] = []
    deliveries: list[float] = []
    writes: list[float] = []
    timeouts = 0
    try:
        ready, _failed = fleet.wait_ready(120 + watchers_total / 20)
        connect_s = time.monotonic() - started
        time.sleep(2.0)  # let connection set-up work drain before the first write
        for k in range(WARMUP_WRITES):  # first deliveries on fresh streams: not counted
            with contextlib.suppress(TimeoutError):
                fleet.wait_applied(write(updates + k), 60)
            time.sleep(0.2)
        cpu_before, clients_before = server.cpu_seconds(), fleet.cpu_seconds()
        for k in range(updates):
            sent = time.monotonic_ns()
            revision = write(k)
            acked = time.monotonic_ns()
            writes.append((acked - sent) / NS_PER_MS)
            try:
                times = fleet.wait_applied(revision, 60)
            except TimeoutError:
                timeouts += 1
                continue
            all_applied.append((max(times) - acked) / NS_PER_MS)
            deliveries.extend((t - acked) / NS_PER_MS for t in times)
            # Irregular gaps, so writes never line up with heartbeats or timers.
            time.sleep(random.uniform(*gap_s))
        cpu_after, clients_after = server.cpu_seconds(), fleet.cpu_seconds()
    finally:
        results = fleet.stop()
    deliveries.sort()
    deliveries_made = max(1, updates * max(1, ready))
    return FanoutResult(
        system=system,
        watchers=watchers_total,
        connected=ready,
        updates=updates,
        all_applied_ms=summarize(all_applied),
        per_watcher_p50_ms=deliveries[len(deliveries) // 2] if deliveries else float("nan"),
        write_ms=summarize(writes),
        server_cpu_us_per_delivery=(cpu_after - cpu_before) * 1e6 / deliveries_made,
        client_cpu_us_per_delivery=(clients_after - clients_before) * 1e6 / deliveries_made,
        connect_s=connect_s,
        timeouts=timeouts,
        error_kinds=_error_kinds(results),
    )


# -- d: capacity ---------------------------------------------------------------------------


@dataclass(slots=True)
class CapacityResult:
    """Server RSS with ``watchers`` streams open."""

    system: str
    watchers: int
    connected: int
    rss_before_kib: int
    rss_half_kib: int
    rss_after_kib: int
    connect_s: float
    one_update_ms: float
    """One UpdateConfig with every watcher connected: acknowledged → all applied."""

    @property
    def per_watcher_kib(self) -> float:
        """(RSS after − RSS before) / watchers."""
        return (self.rss_after_kib - self.rss_before_kib) / max(1, self.connected)

    @property
    def marginal_kib(self) -> float:
        """The second half's cost per watcher: fixed costs excluded."""
        half = self.connected - self.connected // 2
        return (self.rss_after_kib - self.rss_half_kib) / max(1, half)


def capacity(
    *,
    system: str,
    server: ChildServer,
    write: Callable[[int], int],
    watchers_total: int,
    processes: int,
    channel_base: int,
    settle_s: float = 3.0,
) -> CapacityResult:
    """Open ``watchers_total`` streams in two waves; read the server's RSS around them."""
    ctx = _spawn()
    protocol = "etcd" if system == "etcd" else "stageconfig"  # the floor speaks WatchConfig

    def fleet(total: int, procs: int, base: int) -> Fleet:
        return Fleet(
            ctx,
            system=protocol,
            target=server.address,
            total=total,
            processes=procs,
            channel_base=base,
        )

    # Warm the server's watch path (lazy imports, first allocations) before "before".
    warm = fleet(4, 1, channel_base)
    warm.wait_ready(60)
    warm.stop()
    time.sleep(settle_s)
    rss_before = server.rss_kib()
    half = watchers_total // 2
    started = time.monotonic()
    fleets = [fleet(half, max(1, processes // 2), channel_base + 100)]
    try:
        ready_first, _ = fleets[0].wait_ready(120 + half / 20)
        time.sleep(settle_s)
        rss_half = server.rss_kib()
        second = fleet(
            watchers_total - half, max(1, processes - processes // 2), channel_base + 100 + half
        )
        fleets.append(second)
        ready_second, _ = second.wait_ready(120 + half / 20)
        connect_s = time.monotonic() - started
        time.sleep(settle_s)
        rss_after = server.rss_kib()
        revision = write(0)
        acked = time.monotonic_ns()
        last = 0
        for each in fleets:
            last = max(last, max(each.wait_applied(revision, 120)))
        one_update_ms = (last - acked) / NS_PER_MS
    finally:
        for each in fleets:
            each.stop(120)
    return CapacityResult(
        system=system,
        watchers=watchers_total,
        connected=ready_first + ready_second,
        rss_before_kib=rss_before,
        rss_half_kib=rss_half,
        rss_after_kib=rss_after,
        connect_s=connect_s,
        one_update_ms=one_update_ms,
    )


# -- e: reconnect storm --------------------------------------------------------------------


@dataclass(slots=True)
class StormResult:
    """A restart under ``watchers`` resuming watchers."""

    watchers: int
    connected: int
    stop_s: float
    start_s: float
    """SIGTERM → the new server listening."""
    sync_from_listen_s: float
    """New server listening → every watcher applied the newest revision."""
    sync_from_sigterm_s: float
    per_watcher_from_listen_ms: Summary
    missed_revisions: int
    resumed_by_snapshot: int
    reconnects: int
    offline_revisions: list[int] = field(default_factory=list)
    policy: str = "client"
    """"client": the client library's reconnect policy (fail fast, full-jitter backoff);
    "wait_for_ready": streams opened with wait_for_ready (a proposal, for comparison)."""


async def _offline_updates(database_url: str, secret: str, models: Sequence[str]) -> list[int]:
    """Write VOICE changes straight to the database while the server is down, through
    the service layer (as a second admin process or another replica would)."""
    from stageconfig_server.admin_events import LogAndWebhookEvents
    from stageconfig_server.app import open_storage
    from stageconfig_server.domain import ProviderKind, StageType
    from stageconfig_server.providers.registry import build_adapters
    from stageconfig_server.service import ConfigService, UpdateRequest
    from stageconfig_server.settings import LegacySettings, Settings

    settings = Settings(
        _env_file=None, STAGECONFIG_DATABASE_URL=database_url, ADMIN_SECRET_KEY=secret
    )
    engine, repository, cipher = await open_storage(settings)
    try:
        service = ConfigService(
            repository,
            cipher,
            build_adapters(settings.provider_base_urls(), settings.provider_timeout_seconds),
            LegacySettings.model_validate({}),
            events=LogAndWebhookEvents(None),
        )
        await service.load()
        revisions = []
        for model in models:
            result = await service.update(
                UpdateRequest(StageType.VOICE, ProviderKind.SPEECHKIT, model=model),
                actor="bench-offline-admin",
            )
            revisions.append(result.config.revision)
        return revisions
    finally:
        await engine.dispose()


def storm(
    *,
    server: ChildServer,
    database_url: str,
    secret: str,
    watchers_total: int,
    processes: int,
    channel_base: int,
    offline_changes: int = 2,
    policy: str = "client",
) -> StormResult:
    """SIGTERM the server under ``watchers_total`` watchers, write ``offline_changes``
    revisions while it is down, start it again on the same port and database, and time
    until every watcher has resumed and applied them all."""
    ctx = _spawn()
    fleet = Fleet(
        ctx,
        system="stageconfig",
        target=server.address,
        total=watchers_total,
        processes=processes,
        channel_base=channel_base,
        reconnect=True,
        wait_for_ready=policy == "wait_for_ready",
    )
    try:
        ready, _ = fleet.wait_ready(120 + watchers_total / 20)
        time.sleep(1.0)
        sigterm = time.monotonic_ns()
        stop_s = server.stop()
        models = [VOICES[(i + 2) % len(VOICES)] for i in range(offline_changes)]
        offline = asyncio.run(_offline_updates(database_url, secret, models))
        server.start()
        listening = time.monotonic_ns()
        times = fleet.wait_applied(offline[-1], 120)
    finally:
        results = fleet.stop()
    missed = 0
    wanted = set(offline)
    for result in results:
        for applied, first in zip(result["applied"], result["first_revision"], strict=True):
            if first is not None:  # a watcher that never connected has nothing to resume
                missed += len(wanted - set(applied))
    last = max(times)
    return StormResult(
        watchers=watchers_total,
        connected=ready,
        stop_s=stop_s,
        start_s=(listening - sigterm) / 1e9,
        sync_from_listen_s=(last - listening) / 1e9,
        sync_from_sigterm_s=(last - sigterm) / 1e9,
        per_watcher_from_listen_ms=summarize((t - listening) / NS_PER_MS for t in times),
        missed_revisions=missed,
        resumed_by_snapshot=sum(r["resumed_by_snapshot"] for r in results),
        reconnects=sum(r["reconnects"] for r in results),
        offline_revisions=offline,
        policy=policy,
    )


def write_response_file(path: Path, data: bytes) -> Path:
    """Store the GetActiveConfig bytes the floor server will answer with."""
    path.write_bytes(data)
    return path
