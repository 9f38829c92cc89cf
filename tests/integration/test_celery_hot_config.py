"""Hot config in real Celery workers, end to end, all real processes: the stageconfig
server (a subprocess, restarted on the same database and port), the Redis broker, and
``celery worker --pool=prefork --concurrency=2`` running the example app.

- every stage's task reports its provider and model; the POEM task writes a poem through
  ProviderFactory with the configured provider and model;
- UpdateConfig changes POEM's provider and model: within a second every child uses them,
  no restart (the propagation time is measured and printed);
- the server is SIGKILLed during a stream of tasks: they keep running on the last
  config (STALE); a worker started meanwhile runs from the last-known-good file; the
  server restarts; a change made before the workers are back reaches them as exactly
  the missed change (resumed, not a snapshot), and no child misses a revision.
"""

from __future__ import annotations

import statistics
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest

from stageconfig_contract.v1 import stage_config_pb2 as pb
from stageconfig_contract.v1 import stage_config_pb2_grpc as pbg
from tests.fakes.provider_server import FakeProviders
from tests.integration.support import (
    CeleryWorker,
    TaskClient,
    free_port,
    stack_env,
    unique_queue,
)
from tests.support.servers import ServerProcess, server_env

pytestmark = pytest.mark.slow

CACHE_KEY = "integration-cache-key-5f1e2d3c4b5a"
POEM_KEY = "sk-integration-poem-key-0001"


@dataclass
class Stack:
    fake: FakeProviders
    server: ServerProcess
    stub: pbg.StageConfigServiceStub
    worker: CeleryWorker
    tasks: TaskClient
    env: dict[str, str]
    pids: set[int]


def set_poem(stub: pbg.StageConfigServiceStub, provider: int, model: str) -> int:
    response = stub.UpdateConfig(
        pb.UpdateConfigRequest(
            stage_type=pb.STAGE_TYPE_POEM,
            provider_kind=provider,  # type: ignore[arg-type]
            api_key=POEM_KEY,
            model=model,
        ),
        timeout=10,
    )
    revision: int = response.config.revision
    return revision


def configure_every_stage(stub: pbg.StageConfigServiceStub) -> None:
    set_poem(stub, pb.PROVIDER_KIND_OPENAI, "gpt-4o")
    for stage, provider, key, model in (
        (pb.STAGE_TYPE_VOICE, pb.PROVIDER_KIND_SPEECHKIT, "AQVN-voice-key-0001", "alena"),
        (pb.STAGE_TYPE_SONG, pb.PROVIDER_KIND_SUNO, "suno-key-0001", "V5"),
        (pb.STAGE_TYPE_CLIP, pb.PROVIDER_KIND_PIKA, "fal-key-0001:secret", None),
    ):
        request = pb.UpdateConfigRequest(stage_type=stage, provider_kind=provider, api_key=key)
        if model is not None:
            request.model = model
        stub.UpdateConfig(request, timeout=10)


def history_revisions(stub: pbg.StageConfigServiceStub) -> list[int]:
    page = stub.GetConfigHistory(pb.GetConfigHistoryRequest(page_size=100), timeout=10)
    return sorted(e.revision for e in page.entries)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    tmp = tmp_path_factory.mktemp("hot-config")
    fake = FakeProviders().start()
    server = ServerProcess(
        server_env(tmp / "stageconfig.db", fake, STAGECONFIG_ADDRESS=f"127.0.0.1:{free_port()}")
    ).start()
    channel = grpc.insecure_channel(server.target)
    stub = pbg.StageConfigServiceStub(channel)
    configure_every_stage(stub)
    env = stack_env(
        server.target,
        fake,
        STAGECONFIG_CACHE_PATH=str(tmp / "lkg" / "stageconfig.json"),
        STAGECONFIG_CACHE_KEY=CACHE_KEY,
        STAGECONFIG_BACKOFF_MAX_SECONDS="1",
    )
    queue = unique_queue("hot")
    worker = CeleryWorker(env, queue, concurrency=2)
    tasks = TaskClient(queue)
    try:
        worker.start()
        pids: set[int] = set()
        deadline = time.monotonic() + 20
        while len(pids) < 2:
            assert time.monotonic() < deadline, f"one pool process never answered: {pids}"
            pids |= {r["pid"] for r in tasks.run_batch("probe.report", 4, hold=0.2)}
        yield Stack(fake, server, stub, worker, tasks, env, pids)
    finally:
        worker.stop()
        tasks.close()
        channel.close()
        server.stop()
        fake.stop()


def test_every_stage_task_reports_its_provider_and_model(stack: Stack) -> None:
    reports = {
        name: stack.tasks.run(f"example.{name}_config")
        for name in ("poem", "voice", "song", "clip")
    }
    assert {n: (r["provider"], r["model"]) for n, r in reports.items()} == {
        "poem": ("OPENAI", "gpt-4o"),
        "voice": ("SPEECHKIT", "alena"),
        "song": ("SUNO", "V5"),
        "clip": ("PIKA", "fal-ai/pika/v2.2/text-to-video"),
    }
    assert all(r["state"] == "READY" and r["pid"] in stack.pids for r in reports.values())


def test_the_poem_task_writes_through_the_provider_factory(stack: Stack) -> None:
    stack.fake.clear_requests()
    result = stack.tasks.run("example.write_poem", topic="the sea")
    assert (result["provider"], result["model"]) == ("OPENAI", "gpt-4o")
    assert result["poem"].startswith("A poem by gpt-4o:")
    assert "the sea" in result["poem"]
    (call,) = [r for r in stack.fake.requests if r.path == "/v1/chat/completions"]
    assert call.header("authorization") == f"Bearer {POEM_KEY}"


def test_an_update_reaches_every_child_within_a_second(stack: Stack) -> None:
    plan = [
        (pb.PROVIDER_KIND_GEMINI, "GEMINI", "gemini-2.5-pro"),
        (pb.PROVIDER_KIND_OPENAI, "OPENAI", "gpt-4o-mini"),
        (pb.PROVIDER_KIND_GEMINI, "GEMINI", "gemini-2.5-flash"),
        (pb.PROVIDER_KIND_OPENAI, "OPENAI", "o3-mini"),
        (pb.PROVIDER_KIND_GEMINI, "GEMINI", "gemini-2.5-pro"),
    ]
    applied: list[float] = []
    sent_to_applied: list[float] = []
    task_seen: list[float] = []
    for provider, name, model in plan:
        sent = time.time()
        revision = set_poem(stack.stub, provider, model)
        acked = time.time()  # UpdateConfig answered: committed and pushed
        first_new = stack.tasks.per_process(
            "probe.report",
            stack.pids,
            timeout=5,
            accept=lambda r, name=name, model=model: (r["provider"], r["model"]) == (name, model),
            hold=0.05,
        )
        # What tasks saw: the first task in each child that used the new values.
        task_seen.append(max(r["ran_at"] for r in first_new.values()) - acked)
        # When each child's client applied the revision (its change listener's clock).
        events = stack.tasks.per_process(
            "probe.events",
            stack.pids,
            timeout=5,
            accept=lambda r, revision=revision: any(e["revision"] == revision for e in r["events"]),
            hold=0.05,
        )
        last_child = max(
            next(e["at"] for e in r["events"] if e["revision"] == revision) for r in events.values()
        )
        # The server pushes at commit, before it answers: a child may apply first.
        applied.append(max(0.0, last_child - acked))
        sent_to_applied.append(last_child - sent)
    assert max(task_seen) < 1.0, task_seen
    assert max(applied) < 1.0, applied

    def ms(values: list[float]) -> str:
        return f"median {statistics.median(values) * 1000:.1f} ms, max {max(values) * 1000:.1f} ms"

    print(
        f"\npropagation (n={len(plan)}): UpdateConfig ack -> every child applied: "
        f"{ms(applied)}; UpdateConfig sent -> every child applied (includes the provider "
        f"check and the commit): {ms(sent_to_applied)}; ack -> a task in every child "
        f"used it (includes Celery dispatch): {ms(task_seen)}"
    )

    stack.fake.clear_requests()
    poem = stack.tasks.run("example.write_poem", topic="the wind")
    assert poem["poem"].startswith("A poem by gemini-2.5-pro:")
    assert any(r.path.endswith("gemini-2.5-pro:generateContent") for r in stack.fake.requests)


def test_a_killed_server_leaves_tasks_running_and_workers_converge_without_gaps(
    stack: Stack, tmp_path: Path
) -> None:
    held = stack.tasks.run("probe.report")
    model, revision = held["model"], held["applied_revision"]
    results: list[dict[str, Any]] = []
    errors: list[BaseException] = []
    stop = threading.Event()

    def stream_of_tasks() -> None:
        while not stop.is_set():
            try:
                results.append(stack.tasks.run("probe.report", hold=0.02))
            except BaseException as exc:
                errors.append(exc)

    streamer = threading.Thread(target=stream_of_tasks, daemon=True)
    streamer.start()
    second: CeleryWorker | None = None
    second_tasks = TaskClient(unique_queue("lkg"))
    try:
        deadline = time.monotonic() + 10
        while not results:  # the stream of tasks is flowing before the kill
            assert time.monotonic() < deadline, errors
            time.sleep(0.01)
        stack.server.kill()
        killed_at = time.time()

        # Tasks keep running on the last config; the clients notice the silence (STALE).
        deadline = time.monotonic() + 10
        while not any(r["ran_at"] > killed_at and r["state"] == "STALE" for r in results):
            assert time.monotonic() < deadline, "no task reported STALE after the kill"
            time.sleep(0.02)
        during = [r for r in results if r["ran_at"] > killed_at]
        assert {(r["model"], r["applied_revision"]) for r in during} == {(model, revision)}

        # A worker started while the server is down runs from the last-known-good file.
        second = CeleryWorker(stack.env, second_tasks.queue, concurrency=1).start()
        from_file = second_tasks.run("probe.report")
        assert (from_file["state"], from_file["model"]) == ("STALE", model)
        assert from_file["applied_revision"] == revision

        # The server returns on the same database and port; a change lands before the
        # workers are back (their backoff is up to 1 s).
        stack.server.start()
        restarted_at, restarted_wall = time.monotonic(), time.time()
        missed = set_poem(stack.stub, pb.PROVIDER_KIND_OPENAI, "gpt-4o")

        def converged(r: dict[str, Any]) -> bool:
            return r["state"] == "READY" and r["applied_revision"] == missed

        stack.tasks.per_process("probe.report", stack.pids, timeout=15, accept=converged)
        deadline = time.monotonic() + 15
        while not converged(second_tasks.run("probe.report")):
            assert time.monotonic() < deadline, "the worker started from the file never converged"
        convergence = time.monotonic() - restarted_at
    finally:
        stop.set()
        streamer.join(30)
        if second is not None:
            second.stop()
    assert errors == []
    print(f"\nconverged (observed by tasks) {convergence:.2f} s after the server restart")

    # No child missed a revision: each applied every revision after its first snapshot,
    # and the missed change came as a change (a resume), not as a new snapshot.
    everything = history_revisions(stack.stub)
    reports = stack.tasks.per_process("probe.events", stack.pids, timeout=10, hold=0.1)
    for pid, report in reports.items():
        seen = list(dict.fromkeys(e["revision"] for e in report["events"]))
        assert seen == [seen[0], *(r for r in everything if r > seen[0])], (pid, seen)
        (last,) = [e for e in report["events"] if e["revision"] == missed]
        assert last["source"] == "CHANGE", report["events"]
        back = last["at"] - restarted_wall
        print(f"child {pid} applied the missed change {back:.2f} s after the restart")
    second_tasks.close()
