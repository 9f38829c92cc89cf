"""Client processes: the load, the watchers and the hot reads, one entry point each.

Each entry point runs in a spawned process (never forked: grpc does not survive a
fork) and talks to the orchestrator over a ``multiprocessing`` pipe with tuples:

- ``unary_load``:  → ("ready",) ← ("go", start_ns) → ("result", {...})
- ``watchers``:    → ("ready", ok, failed) then ("applied", revision, times) each time
  every watcher of the process has applied a revision; ← ("stop",) → ("result", {...})
- ``hot_read``:    → ("result", {...})

Times are ``time.monotonic_ns()``: CLOCK_MONOTONIC is one clock for every process of
a Linux machine, so a watcher's "applied at" and the orchestrator's "acknowledged at"
are directly comparable.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from array import array
from collections.abc import Callable
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import Any, cast

import grpc

from bench_lib import wire
from bench_lib.processes import raise_fd_limit
from bench_lib.wire import etcd, pb

_EOF = cast(Any, grpc.aio).EOF  # the end of a stream's reads (absent from grpc-stubs)

# -- unary load ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class UnarySpec:
    """One load process: ``inflight`` call loops over ``channels`` channels."""

    system: str
    """"stageconfig" or "bare" (GetActiveConfig), or "etcd" (KV.Range)."""
    target: str
    inflight: int
    channels: int
    channel_base: int
    warmup_s: float
    duration_s: float


def _unary_call(system: str, channel: grpc.aio.Channel) -> tuple[Any, Any]:
    if system == "etcd":
        call = channel.unary_unary(
            wire.ETCD_RANGE,
            request_serializer=etcd.RangeRequest.SerializeToString,
            response_deserializer=etcd.RangeResponse.FromString,
        )
        return call, etcd.RangeRequest(key=wire.ETCD_KEY)
    call = channel.unary_unary(
        wire.GET_ACTIVE,
        request_serializer=pb.GetActiveConfigRequest.SerializeToString,
        response_deserializer=pb.GetActiveConfigResponse.FromString,
    )
    return call, pb.GetActiveConfigRequest(stage_type=pb.STAGE_TYPE_VOICE)


def unary_load(conn: Connection, spec: UnarySpec) -> None:
    """Closed-loop load: each of ``inflight`` loops calls again as soon as its call ends."""
    raise_fd_limit()
    asyncio.run(_unary_load(conn, spec))


async def _unary_load(conn: Connection, spec: UnarySpec) -> None:
    channels = [
        grpc.aio.insecure_channel(spec.target, options=wire.channel_options(spec.channel_base + i))
        for i in range(spec.channels)
    ]
    calls = [_unary_call(spec.system, channel) for channel in channels]
    for call, request in calls:  # connect every channel before the clock starts
        await call(request, timeout=30)
    conn.send(("ready",))
    while True:  # one round per ("go", start_ns), until ("stop",)
        message = conn.recv()
        if message[0] != "go":
            break
        latencies, errors = await _unary_round(calls, spec, message[1])
        conn.send(("result", {"latencies": latencies.tobytes(), "errors": errors}))
    for channel in channels:
        await channel.close(None)


async def _unary_round(
    calls: list[tuple[Any, Any]], spec: UnarySpec, start_ns: int
) -> tuple[array[int], int]:
    measure_from = start_ns + int(spec.warmup_s * 1e9)
    measure_to = measure_from + int(spec.duration_s * 1e9)
    latencies = array("q")
    errors = 0

    async def loop(call: Any, request: Any) -> None:
        nonlocal errors
        clock = time.monotonic_ns
        while True:
            started = clock()
            if started >= measure_to:
                return
            try:
                await call(request, timeout=10)
            except grpc.aio.AioRpcError:
                errors += 1
                continue
            if started >= measure_from:
                latencies.append(clock() - started)

    await asyncio.sleep(max(0.0, (start_ns - time.monotonic_ns()) / 1e9))
    await asyncio.gather(*(loop(*calls[i % len(calls)]) for i in range(spec.inflight)))
    return latencies, errors


# -- watchers ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class WatchSpec:
    """One watcher process: ``count`` watchers, each on its own channel."""

    system: str
    """"stageconfig" (WatchConfig) or "etcd" (Watch of one key)."""
    target: str
    count: int
    channel_base: int
    reconnect: bool = False
    """Reconnect after the stream ends, resuming from the applied revision."""
    wait_for_ready: bool = False
    """Open streams with wait_for_ready (the call waits for the channel to connect)
    instead of failing fast while the server is down, as the client library does."""
    connect_concurrency: int = 64
    """Streams being opened at once, so 2,000 connects do not all time out together."""


@dataclass(slots=True)
class _WatcherState:
    revision: int | None = None
    config: Any = None
    applied: list[int] = field(default_factory=list)
    snapshots: int = 0
    resumed_by_snapshot: int = 0
    reconnects: int = 0
    errors: int = 0
    first_revision: int | None = None
    ready: bool = False


class _WatcherProcess:
    """The watchers of one process and what they report to the orchestrator."""

    def __init__(self, conn: Connection, spec: WatchSpec) -> None:
        self._conn = conn
        self._spec = spec
        self._states = [_WatcherState() for _ in range(spec.count)]
        self._reached: dict[int, array[int]] = {}
        self._ready = 0
        self._failed = 0
        self._settled = asyncio.Event()
        self._stop = asyncio.Event()
        self._expected_total = spec.count
        self._gate = asyncio.Semaphore(spec.connect_concurrency)
        self._error_kinds: dict[str, int] = {}

    def _reach(self, revision: int, now: int) -> None:
        times = self._reached.setdefault(revision, array("q"))
        times.append(now)
        if len(times) >= self._expected_total:
            del self._reached[revision]
            self._conn.send(("applied", revision, times.tobytes()))

    def _mark_ready(self, state: _WatcherState) -> None:
        if not state.ready:
            state.ready = True
            self._ready += 1
            self._check_settled()

    def _mark_failed(self) -> None:
        self._failed += 1
        self._check_settled()

    def _check_settled(self) -> None:
        if self._ready + self._failed >= self._spec.count and not self._settled.is_set():
            self._expected_total = self._ready
            self._settled.set()
            self._conn.send(("ready", self._ready, self._failed))

    async def _stageconfig(self, index: int) -> None:
        spec, state = self._spec, self._states[index]
        channel = grpc.aio.insecure_channel(
            spec.target, options=wire.channel_options(spec.channel_base + index)
        )
        watch = channel.unary_stream(
            wire.WATCH_CONFIG,
            request_serializer=pb.WatchConfigRequest.SerializeToString,
            response_deserializer=pb.WatchConfigResponse.FromString,
        )
        from stageconfig._backoff import Backoff  # the client library's own policy

        backoff = Backoff()
        # As ConfigClient: after a stream that delivered, a short jittered backoff; after
        # one that never reached the server, wait for the connection (wait_for_ready).
        delivered = True
        await self._gate.acquire()
        gate: asyncio.Semaphore | None = self._gate
        clock = time.monotonic_ns
        try:
            while not self._stop.is_set():
                request = pb.WatchConfigRequest(
                    stage_types=[pb.STAGE_TYPE_VOICE],
                    client_id=f"bench-{spec.channel_base + index}",
                )
                resuming = state.revision is not None
                if state.revision is not None:
                    request.resume_revision = state.revision
                try:
                    # The first stream waits for its connection (a fleet of thousands
                    # connecting at once must not count a slow handshake as a failure);
                    # reconnects follow the policy under test.
                    ready_wait = spec.wait_for_ready or not state.ready or not delivered
                    delivered = False
                    async for message in watch(request, wait_for_ready=ready_wait):
                        delivered = True
                        kind = message.WhichOneof("event")
                        if kind == "change":
                            state.config = message.change.config
                            revision = message.change.revision
                            state.revision = revision
                            now = clock()
                            state.applied.append(revision)
                            self._reach(revision, now)
                        elif kind == "snapshot":
                            snapshot = message.snapshot
                            state.config = snapshot.configs[0] if snapshot.configs else None
                            state.revision = snapshot.revision
                            now = clock()
                            state.snapshots += 1
                            if resuming:
                                state.resumed_by_snapshot += 1
                                self._reach(snapshot.revision, now)
                            else:
                                state.first_revision = snapshot.revision
                        elif kind == "heartbeat":
                            head = message.heartbeat.head_revision
                            # The server promises nothing is pending up to its head: the
                            # client is current there (as the client library treats it).
                            if state.revision is not None and head > state.revision:
                                state.revision = head
                        if gate is not None:
                            gate.release()
                            gate = None
                            self._mark_ready(state)
                        backoff.reset()
                except grpc.aio.AioRpcError as exc:
                    state.errors += 1
                    self._note_error(exc)
                except Exception as exc:  # a harness bug must show in the report, not hang
                    state.errors += 1
                    self._note_error(exc)
                    break
                if self._stop.is_set():
                    break
                if not state.ready:
                    if state.errors >= 3:
                        break  # never got a first message: count it as failed
                    await asyncio.sleep(0.5)
                    continue
                if not spec.reconnect:
                    break
                state.reconnects += 1
                if delivered:
                    await asyncio.sleep(backoff.next_delay())
        finally:
            if gate is not None:
                gate.release()
                self._mark_failed()
            await channel.close(None)

    async def _etcd(self, index: int) -> None:
        spec, state = self._spec, self._states[index]
        channel = grpc.aio.insecure_channel(
            spec.target, options=wire.channel_options(spec.channel_base + index)
        )
        watch = channel.stream_stream(
            wire.ETCD_WATCH,
            request_serializer=etcd.WatchRequest.SerializeToString,
            response_deserializer=etcd.WatchResponse.FromString,
        )
        await self._gate.acquire()
        gate: asyncio.Semaphore | None = self._gate
        clock = time.monotonic_ns
        try:
            call: Any = cast(Any, watch)(wait_for_ready=True)
            await call.write(
                etcd.WatchRequest(create_request=etcd.WatchCreateRequest(key=wire.ETCD_KEY))
            )
            while True:
                response = await call.read()
                if response is _EOF:
                    break
                if response.created and gate is not None:
                    gate.release()
                    gate = None
                    self._mark_ready(state)
                for event in response.events:
                    # The value is the same WatchConfigResponse bytes stageconfig sends:
                    # decoding it is the same "apply" work a stageconfig watcher does.
                    state.config = pb.WatchConfigResponse.FromString(event.kv.value)
                    revision = event.kv.mod_revision
                    state.revision = revision
                    now = clock()
                    state.applied.append(revision)
                    self._reach(revision, now)
        except Exception as exc:  # AioRpcError, or a harness bug: reported either way
            state.errors += 1
            self._note_error(exc)
        finally:
            if gate is not None:
                gate.release()
                self._mark_failed()
            await channel.close(None)

    def _note_error(self, exc: Exception) -> None:
        if isinstance(exc, grpc.aio.AioRpcError):
            key = f"{exc.code().name}: {exc.details()}"
        else:
            key = f"{type(exc).__name__}: {exc}"
        if len(self._error_kinds) < 10 or key in self._error_kinds:
            self._error_kinds[key] = self._error_kinds.get(key, 0) + 1

    def _on_control(self) -> None:
        message = self._conn.recv()
        if message[0] == "stop":
            self._stop.set()

    def _result(self) -> dict[str, Any]:
        return {
            "ready": self._ready,
            "failed": self._failed,
            "errors": sum(s.errors for s in self._states),
            "error_kinds": self._error_kinds,
            "reconnects": sum(s.reconnects for s in self._states),
            "snapshots": sum(s.snapshots for s in self._states),
            "resumed_by_snapshot": sum(s.resumed_by_snapshot for s in self._states),
            "applied": [s.applied for s in self._states],
            "first_revision": [s.first_revision for s in self._states],
            "final_revision": [s.revision for s in self._states],
        }

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        loop.add_reader(self._conn.fileno(), self._on_control)
        body: Callable[[int], Any] = (
            self._etcd if self._spec.system == "etcd" else self._stageconfig
        )
        tasks = [asyncio.create_task(body(i)) for i in range(self._spec.count)]
        await self._stop.wait()
        for task in tasks:
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.gather(*tasks, return_exceptions=True)
        loop.remove_reader(self._conn.fileno())
        self._conn.send(("result", self._result()))


def watchers(conn: Connection, spec: WatchSpec) -> None:
    """Hold ``spec.count`` watch streams and report when each revision reached them all."""
    raise_fd_limit()
    asyncio.run(_WatcherProcess(conn, spec).run())


# -- hot reads -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class HotReadSpec:
    """One way a task could read its stage's config, timed call by call."""

    mode: str
    """"client" (ConfigClient.get), "grpc" (GetActiveConfig per call) or "db" (the
    repository + KeyCipher per call, the plan's original pattern)."""
    calls: int
    target: str = ""
    database_url: str = ""
    secret: str = ""


def _timer_overhead_ns(samples: int = 20_000) -> int:
    """The median cost of one perf_counter_ns() pair, subtracted from every sample."""
    clock = time.perf_counter_ns
    costs = []
    for _ in range(samples):
        started = clock()
        costs.append(clock() - started)
    costs.sort()
    return costs[len(costs) // 2]


def hot_read(conn: Connection, spec: HotReadSpec) -> None:
    """Time ``spec.calls`` reads one by one; report the samples (ns, timer-corrected)."""
    overhead = _timer_overhead_ns()
    if spec.mode == "client":
        result = _hot_client(spec)
    elif spec.mode == "grpc":
        result = _hot_grpc(spec)
    else:
        result = asyncio.run(_hot_db(spec))
    samples, extra = result
    corrected = array("q", (max(0, s - overhead) for s in samples))
    conn.send(("result", {"latencies": corrected.tobytes(), "timer_ns": overhead, **extra}))


def _hot_client(spec: HotReadSpec) -> tuple[array[int], dict[str, Any]]:
    from stageconfig import ConfigClient, StageType

    client = ConfigClient(spec.target)
    client.start()
    try:
        client.wait_ready(30)
        get, stage, clock = client.get, StageType.VOICE, time.perf_counter_ns
        samples = array("q")
        for _ in range(spec.calls):
            started = clock()
            get(stage)
            samples.append(clock() - started)
        # Batches of 1,000 calls under one timer pair: the per-call mean without any
        # timer cost, a cross-check of the corrected single-call numbers.
        batch_means = []
        for _ in range(max(1, spec.calls // 1000)):
            started = clock()
            for _ in range(1000):
                get(stage)
            batch_means.append((clock() - started) / 1000)
        batch_means.sort()
        return samples, {"batch_mean_ns": batch_means[len(batch_means) // 2]}
    finally:
        client.close()


def _hot_grpc(spec: HotReadSpec) -> tuple[array[int], dict[str, Any]]:
    channel = grpc.insecure_channel(spec.target, options=wire.channel_options(os.getpid()))
    call = channel.unary_unary(
        wire.GET_ACTIVE,
        request_serializer=pb.GetActiveConfigRequest.SerializeToString,
        response_deserializer=pb.GetActiveConfigResponse.FromString,
    )
    request = pb.GetActiveConfigRequest(stage_type=pb.STAGE_TYPE_VOICE)
    for _ in range(50):
        call(request, timeout=10)
    clock = time.perf_counter_ns
    samples = array("q")
    for _ in range(spec.calls):
        started = clock()
        call(request, timeout=10)
        samples.append(clock() - started)
    channel.close()
    return samples, {}


async def _hot_db(spec: HotReadSpec) -> tuple[array[int], dict[str, Any]]:
    from stageconfig_server.crypto import KeyCipher
    from stageconfig_server.db.engine import create_engine
    from stageconfig_server.db.repository import Repository
    from stageconfig_server.domain import StageType

    engine = create_engine(spec.database_url)
    cipher = KeyCipher(spec.secret)  # derived once, as a worker would at start
    repository = Repository(engine)
    clock = time.perf_counter_ns
    samples = array("q")
    try:
        for i in range(spec.calls + 20):
            started = clock()
            row = await repository.get(StageType.VOICE)
            if row is None:
                raise RuntimeError("VOICE is not stored")
            cipher.decrypt_key(row.api_key_encrypted)
            if i >= 20:  # the first reads open the pool's connection
                samples.append(clock() - started)
    finally:
        await engine.dispose()
    return samples, {}
