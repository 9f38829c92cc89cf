"""``scripts/bench``: run every scenario against servers started here; print the report.

    scripts/bench [--quick] [--only a,b,c,d,e] [--update-readme] [--output FILE]
                  [--profile DIR]

a hot read · b unary · c fan-out · d capacity · e reconnect storm · f one stream per
host (stageconfig-agent: worker cost, fan-out to 1,000 readers, the server's share).
``--quick`` is a short run for development (smaller counts, shorter windows); the full
run takes about ten minutes on a 2-core machine. ``--profile DIR`` records the stageconfig server
with py-spy during each scenario (collapsed stacks, one file per scenario).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import secrets
import shlex
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench_lib import agents, machine, processes, report, report_agent, scenarios
from bench_lib.processes import ChildServer
from bench_lib.wire import pb

REPO = Path(__file__).resolve().parents[2]
DEFAULT_OUTPUT = REPO / "artifacts" / "bench" / "report.md"
BENCHMARKS_PAGE = REPO / "docs" / "benchmarks.md"
"""Where ``--update-readme`` (alias ``--update-docs``) writes the results table."""


@dataclass(frozen=True, slots=True)
class Plan:
    """How much of each scenario a run does."""

    name: str
    hot_client_calls: int
    hot_rpc_calls: int
    hot_db_calls: int
    unary_inflight: tuple[int, ...]
    unary_processes: int
    unary_channels_per_process: int
    unary_warmup_s: float
    unary_duration_s: float
    unary_rounds: int
    fanout_watchers: tuple[int, ...]
    fanout_updates: tuple[int, ...]
    fanout_processes: int
    capacity_watchers: int
    capacity_processes: int
    capacity_peers: bool
    """Also hold as many watchers on the bare floor and on etcd (RSS per watcher)."""
    storm_watchers: int
    storm_processes: int
    agent_readers: int = 1_000
    """Scenario f: worker readers (attached, and as many direct ConfigClients)."""
    agent_hosts: int = 10
    agent_reader_processes: int = 20
    direct_readers: int = 250
    """Direct ConfigClients in f's comparison row: each has three threads and grpc's, so
    1,000 of them starve a 2-core machine (load average ~300, streams going silent)."""
    direct_processes: int = 10
    agent_updates: int = 20
    agent_capacity: int = 2_000
    """Agents the server holds in f (one stream each)."""


FULL = Plan(
    name="full",
    hot_client_calls=200_000,
    hot_rpc_calls=3_000,
    hot_db_calls=3_000,
    unary_inflight=(32, 128),
    unary_processes=2,
    unary_channels_per_process=4,
    unary_warmup_s=0.5,
    unary_duration_s=3.0,
    unary_rounds=5,
    fanout_watchers=(100, 1_000, 5_000),
    fanout_updates=(30, 30, 20),
    fanout_processes=4,
    capacity_watchers=10_000,
    capacity_processes=6,
    capacity_peers=True,
    storm_watchers=1_000,
    storm_processes=4,
)
QUICK = Plan(
    name="quick",
    hot_client_calls=50_000,
    hot_rpc_calls=500,
    hot_db_calls=500,
    unary_inflight=(32, 128),
    unary_processes=2,
    unary_channels_per_process=4,
    unary_warmup_s=0.3,
    unary_duration_s=1.5,
    unary_rounds=2,
    fanout_watchers=(100, 1_000),
    fanout_updates=(8, 8),
    fanout_processes=4,
    capacity_watchers=2_000,
    capacity_processes=2,
    capacity_peers=True,
    storm_watchers=200,
    storm_processes=2,
    agent_hosts=5,
    agent_reader_processes=10,
    direct_readers=100,
    direct_processes=4,
    agent_updates=6,  # not 5: the first write would repeat the last warm-up (no new revision)
)
HEARTBEAT_SECONDS = 10.0


def _say(message: str) -> None:
    print(f"==> {message}", file=sys.stderr, flush=True)


@contextmanager
def _profiled(server: ChildServer, directory: Path | None, name: str) -> Iterator[None]:
    """py-spy (collapsed stacks) on the server while the block runs, when asked."""
    if directory is None:
        yield
        return
    directory.mkdir(parents=True, exist_ok=True)
    output = directory / f"{name}.txt"
    spy = subprocess.Popen(
        [
            str(Path(sys.executable).parent / "py-spy"),
            "record",
            "--pid",
            str(server.pid),
            "--rate",
            "250",
            "--format",
            "raw",
            "--nonblocking",
            "--output",
            str(output),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        yield
    finally:
        spy.send_signal(signal.SIGINT)  # py-spy writes its output on SIGINT
        try:
            spy.wait(30)
        except subprocess.TimeoutExpired:
            spy.kill()
        _say(f"profile of the server during {name}: {output}")


class Bench:
    """One run: the servers, the scenarios in order, the results."""

    def __init__(self, plan: Plan, only: set[str], profile_dir: Path | None, command: str):
        self.plan = plan
        self.only = only
        self.profile_dir = profile_dir
        self.results = report.Results(machine=machine.describe(), command=command)

    def _scenario(self, key: str, name: str, body: Callable[[], None]) -> None:
        if key not in self.only:
            return
        _say(name)
        started = time.monotonic()
        try:
            body()
        except Exception as exc:  # one broken scenario must not lose the others' numbers
            self.results.errors.append(f"{name}: {type(exc).__name__}: {exc}")
            _say(f"{name} failed: {exc!r}")
        _say(f"{name} took {time.monotonic() - started:.0f} s")

    def run(self) -> report.Results:
        """Start the servers, run the chosen scenarios, stop everything."""
        processes.raise_fd_limit()
        plan = self.plan
        with tempfile.TemporaryDirectory(prefix="stageconfig-bench-") as tmp:
            workdir = Path(tmp)
            db_path = workdir / "stageconfig.db"
            database_url = f"sqlite+aiosqlite:///{db_path}"
            secret = secrets.token_urlsafe(32)
            sc = processes.stageconfig_server(
                workdir=workdir,
                db_path=db_path,
                secret=secret,
                port=processes.free_port(),  # fixed: the storm restarts it on the same port
                heartbeat_seconds=HEARTBEAT_SECONDS,
            )
            servers: list[ChildServer] = []
            try:
                _say("starting stageconfig")
                servers.append(sc.start())
                admin = scenarios.StageconfigAdmin(sc.address)
                admin.update("alena", api_key=scenarios.SEED_KEY)
                response = admin.get_active_bytes()
                config = pb.GetActiveConfigResponse.FromString(response).config
                bare: ChildServer | None = None
                etcd: ChildServer | None = None
                etcd_writer: scenarios.EtcdWriter | None = None
                if self.only & {"b", "c"}:
                    _say("starting the bare grpc.aio floor server")
                    path = scenarios.write_response_file(workdir / "response.bin", response)
                    bare = processes.bare_server(workdir=workdir, response_path=path)
                    servers.append(bare.start())
                if self.only & {"b", "c", "d", "f"}:
                    _say("starting etcd")
                    etcd = processes.etcd_server(
                        workdir=workdir,
                        client_port=processes.free_port(),
                        peer_port=processes.free_port(),
                    )
                    servers.append(etcd.start())
                    etcd_writer = scenarios.EtcdWriter(etcd.address, config)
                    etcd_writer.put("alena")

                def hot() -> None:
                    self.results.hot = scenarios.hot_reads(
                        target=sc.address,
                        database_url=database_url,
                        secret=secret,
                        client_calls=plan.hot_client_calls,
                        rpc_calls=plan.hot_rpc_calls,
                        db_calls=plan.hot_db_calls,
                    )

                def unary() -> None:
                    systems = [
                        (name, server)
                        for name, server in (("stageconfig", sc), ("bare", bare), ("etcd", etcd))
                        if server is not None
                    ]
                    for inflight in plan.unary_inflight:
                        _say(f"unary: {inflight} in flight, {plan.unary_rounds} rounds")
                        with self._maybe_profile(sc, sc, f"unary-{inflight}"):
                            self.results.unary.extend(
                                scenarios.unary(
                                    systems=systems,
                                    inflight=inflight,
                                    processes=plan.unary_processes,
                                    channels_per_process=plan.unary_channels_per_process,
                                    warmup_s=plan.unary_warmup_s,
                                    duration_s=plan.unary_duration_s,
                                    rounds=plan.unary_rounds,
                                )
                            )

                def fanout() -> None:
                    writers: list[tuple[str, ChildServer, Callable[[int], int]]] = [
                        ("stageconfig", sc, admin.cycle)
                    ]
                    if bare is not None:
                        writers.append(
                            ("bare", bare, scenarios.StageconfigAdmin(bare.address).cycle)
                        )
                    if etcd is not None and etcd_writer is not None:
                        writers.append(("etcd", etcd, etcd_writer.cycle))
                    base = 1_000_000
                    for watchers, updates in zip(
                        plan.fanout_watchers, plan.fanout_updates, strict=True
                    ):
                        for system, server, write in writers:
                            _say(f"fan-out: {system}, {watchers} watchers")
                            with self._maybe_profile(sc, server, f"fanout-{watchers}"):
                                self.results.fanout.append(
                                    scenarios.fanout(
                                        system=system,
                                        server=server,
                                        write=write,
                                        watchers_total=watchers,
                                        processes=plan.fanout_processes,
                                        updates=updates,
                                        channel_base=base,
                                    )
                                )
                            base += watchers

                def storm() -> None:
                    for policy in ("client", "wait_for_ready"):
                        _say(f"reconnect storm, {policy} policy")
                        with self._maybe_profile(sc, sc, f"storm-{policy}"):
                            self.results.storms.append(
                                scenarios.storm(
                                    server=sc,
                                    database_url=database_url,
                                    secret=secret,
                                    watchers_total=plan.storm_watchers,
                                    processes=plan.storm_processes,
                                    channel_base=2_000_000,
                                    policy=policy,
                                )
                            )

                def capacity() -> None:
                    # Fresh processes: RSS left by earlier scenarios is not a watcher's.
                    sc.stop()
                    sc.start()
                    with self._maybe_profile(sc, sc, "capacity"):
                        self.results.capacity.append(
                            scenarios.capacity(
                                system="stageconfig",
                                server=sc,
                                write=admin.cycle,
                                watchers_total=plan.capacity_watchers,
                                processes=plan.capacity_processes,
                                channel_base=3_000_000,
                            )
                        )
                    if not plan.capacity_peers:
                        return
                    _say("capacity: the bare grpc.aio floor")
                    floor = processes.bare_server(
                        workdir=workdir,
                        response_path=scenarios.write_response_file(
                            workdir / "response.bin", response
                        ),
                    ).start()
                    try:
                        self.results.capacity.append(
                            scenarios.capacity(
                                system="bare",
                                server=floor,
                                write=scenarios.StageconfigAdmin(floor.address).cycle,
                                watchers_total=plan.capacity_watchers,
                                processes=plan.capacity_processes,
                                channel_base=4_000_000,
                            )
                        )
                    finally:
                        floor.stop()
                    if etcd is None:
                        return
                    _say("capacity: etcd")
                    etcd.start()  # same data dir: the key is there
                    try:
                        writer = scenarios.EtcdWriter(etcd.address, config)
                        self.results.capacity.append(
                            scenarios.capacity(
                                system="etcd",
                                server=etcd,
                                write=writer.cycle,
                                watchers_total=plan.capacity_watchers,
                                processes=plan.capacity_processes,
                                channel_base=5_000_000,
                            )
                        )
                        writer.close()
                    finally:
                        etcd.stop()

                self._scenario("a", "a. hot read", hot)
                self._scenario("b", "b. unary GetActiveConfig vs floor vs etcd", unary)
                self._scenario("c", "c. fan-out", fanout)

                def agent() -> None:
                    self.results.agent = agents.scenario(
                        plan, server=sc, write=admin.cycle, etcd=etcd, etcd_writer=etcd_writer
                    )

                self._scenario("f", "f. one stream per host", agent)
                for server in (bare, etcd):  # idle from here on: out of the way
                    if server is not None:
                        server.stop()
                self._scenario("e", "e. reconnect storm", storm)
                self._scenario("d", "d. capacity", capacity)
                admin.close()
                if etcd_writer is not None:
                    etcd_writer.close()
            finally:
                for server in reversed(servers):
                    server.stop()
        return self.results

    @contextmanager
    def _maybe_profile(self, sc: ChildServer, server: ChildServer, name: str) -> Iterator[None]:
        # Only the stageconfig server is profiled: it is the code this repo can change.
        if server is not sc:
            yield
            return
        with _profiled(sc, self.profile_dir, name):
            yield


def _jsonable(results: report.Results) -> dict[str, Any]:
    data = dataclasses.asdict(results)
    for entry, result in zip(data["capacity"], results.capacity, strict=True):
        entry["per_watcher_kib"] = result.per_watcher_kib
        entry["marginal_kib"] = result.marginal_kib
    return data


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``scripts/bench``."""
    parser = argparse.ArgumentParser(prog="scripts/bench", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="a short run for development")
    parser.add_argument("--only", default="a,b,c,d,e,f", help="scenarios to run (default all)")
    parser.add_argument(
        "--update-readme",
        "--update-docs",
        action="store_true",
        help="rewrite the results block of docs/benchmarks.md",
    )
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT, help="report file")
    parser.add_argument("--profile", type=Path, default=None, help="py-spy the server here")
    args = parser.parse_args(argv)
    only = {s.strip() for s in args.only.split(",") if s.strip()}
    if unknown := only - set("abcdef"):
        parser.error(f"unknown scenarios: {', '.join(sorted(unknown))}")
    command = "scripts/bench " + " ".join(shlex.quote(a) for a in (argv or sys.argv[1:]))
    plan = QUICK if args.quick else FULL
    started = time.monotonic()
    results = Bench(plan, only, args.profile, command.strip()).run()
    text = report.render(results)
    if results.agent is not None:
        text += "\n" + "\n".join(report_agent.render(results.agent))
    print(text)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(text)
    args.output.with_suffix(".json").write_text(json.dumps(_jsonable(results), indent=2))
    _say(f"report written to {args.output} ({time.monotonic() - started:.0f} s in all)")
    if args.update_readme:
        if only & set("abcde"):
            report.update_page(BENCHMARKS_PAGE, report.render(results))
        if results.agent is not None:
            report_agent.update_page(
                BENCHMARKS_PAGE, report_agent.render(results.agent), command.strip()
            )
        _say(f"{BENCHMARKS_PAGE.relative_to(REPO)} results block updated")
    return 1 if results.errors else 0


if __name__ == "__main__":
    sys.exit(main())
