"""Fallback routes in a real Celery worker: ``celery worker --pool=prefork`` (one child,
so its one WatchConfig stream gets every change the test scripts) runs the example app
with the probe tasks over the real Redis broker; its stageconfig client watches a real
grpc server on port 0 that sends configs with fallbacks and records the status reports;
the providers are FakeProviders, speaking the OpenAI, Gemini and SpeechKit wire formats.

- Gemini out of quota (429): every poem is written by the OpenAI fallback, no task
  fails; after two failures the breaker opens and Gemini is not called again;
- Gemini answering 500, then recovering: tasks return to it after the cooldown;
- Gemini hanging: the first two tasks wait out the 1 s timeout, the later ones never
  wait on it;
- the VOICE key pool moves to the second key when the first has no credits left;
- every route failing: the task fails with AllRoutesFailed naming each route;
- the reports carry each route's breaker, counts and cause; no key appears in a report,
  a task's error or the worker's log.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from stageconfig.errors import AllRoutesFailed
from stageconfig_contract.v1 import stage_config_pb2 as pb
from stageconfig_server.domain import ProviderKind
from tests.client.newer_server import change, serve, snapshot
from tests.client.report_recorder import ReportRecorder
from tests.fakes.provider_server import FakeProviders
from tests.integration.support import CeleryWorker, TaskClient, stack_env, unique_queue

pytestmark = pytest.mark.slow

OPENAI_KEY = "sk-e2e-fallback-openai-key-1"
VOICE_KEYS = ("AQVN-e2e-voice-key-first-1", "AQVN-e2e-voice-key-second-2")
GEMINI_KEYS = {phase: f"AIza-e2e-gemini-key-{phase}" for phase in ("quota", "500", "hang", "all")}
EVERY_KEY = (OPENAI_KEY, *VOICE_KEYS, *GEMINI_KEYS.values())


def poem_config(revision: int, gemini_key: str) -> pb.StageConfig:
    message = pb.StageConfig(
        stage_type=pb.STAGE_TYPE_POEM,
        provider_kind=pb.PROVIDER_KIND_GEMINI,
        api_key=gemini_key,
        model="gemini-2.5-flash",
        revision=revision,
        status=pb.CONFIG_STATUS_ACTIVE,
        source=pb.CONFIG_SOURCE_DATABASE,
        api_key_fingerprint=gemini_key[-6:],
    )
    message.fallbacks.add(
        provider_kind=pb.PROVIDER_KIND_OPENAI,
        api_key=OPENAI_KEY,
        model="gpt-4o-mini",
        status=pb.CONFIG_STATUS_ACTIVE,
        api_key_fingerprint="openai",
    )
    return message


def voice_config(revision: int) -> pb.StageConfig:
    message = pb.StageConfig(
        stage_type=pb.STAGE_TYPE_VOICE,
        provider_kind=pb.PROVIDER_KIND_SPEECHKIT,
        api_key=VOICE_KEYS[0],
        model="alena",
        revision=revision,
        status=pb.CONFIG_STATUS_UNVERIFIED,
        source=pb.CONFIG_SOURCE_DATABASE,
        api_key_fingerprint="voice1",
    )
    message.fallbacks.add(
        provider_kind=pb.PROVIDER_KIND_SPEECHKIT,
        api_key=VOICE_KEYS[1],
        model="alena",
        api_key_fingerprint="voice2",
    )
    return message


@dataclass
class Stack:
    fake: FakeProviders
    server: ReportRecorder
    worker: CeleryWorker
    tasks: TaskClient

    def gemini_calls(self, key: str) -> int:
        return sum(
            1
            for r in self.fake.requests
            if r.kind == ProviderKind.GEMINI and r.header("x-goog-api-key") == key
        )

    def poems(self, count: int, **kwargs: Any) -> list[dict[str, Any]]:
        return [self.tasks.run("probe.poem", timeout=30, **kwargs) for _ in range(count)]

    def switch_poem(self, revision: int, gemini_key: str) -> None:
        """Send a new POEM config; wait until the worker uses it."""
        self.server.send(change(revision, poem_config(revision, gemini_key)))
        deadline = time.monotonic() + 10
        while self.tasks.run("probe.report", stage="POEM")["revision"] != revision:
            assert time.monotonic() < deadline, f"revision {revision} never reached the worker"
            time.sleep(0.05)

    def routes(self, stage: int) -> dict[int, list[pb.RouteReport]]:
        by_index: dict[int, list[pb.RouteReport]] = {}
        for report in self.server.counted():
            for route in self.server.stage(report, stage).routes:
                by_index.setdefault(route.route_index, []).append(route)
        return by_index


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    fake = FakeProviders().start()
    recorder = ReportRecorder(snapshot(10, poem_config(10, GEMINI_KEYS["quota"]), voice_config(10)))
    grpc_server, target = serve(recorder)
    env = stack_env(
        target,
        fake,
        STAGECONFIG_BACKOFF_MAX_SECONDS="1",
        STAGECONFIG_REPORT_INTERVAL_SECONDS="0.5",
    )
    queue = unique_queue("fallbacks")
    worker = CeleryWorker(env, queue, concurrency=1)
    tasks = TaskClient(queue)
    try:
        worker.start()
        yield Stack(fake, recorder, worker, tasks)
    finally:
        worker.stop()
        tasks.close()
        grpc_server.stop(0)
        fake.stop()


def test_a_quota_failing_primary_is_served_by_the_fallback_and_then_skipped(
    stack: Stack,
) -> None:
    key = GEMINI_KEYS["quota"]
    stack.fake.fail_key(key, "quota")
    first = stack.poems(6, threshold=2, cooldown=600)
    assert all(p["text"].startswith("A poem by gpt-4o-mini:") for p in first)
    assert stack.gemini_calls(key) == 2  # the breaker opened after two failures
    later = stack.poems(4, threshold=2, cooldown=600)
    assert all(p["text"].startswith("A poem by gpt-4o-mini:") for p in later)
    assert stack.gemini_calls(key) == 2  # open: the dead primary is never called

    def reported() -> bool:
        routes = stack.routes(pb.STAGE_TYPE_POEM)
        return sum(r.succeeded for r in routes.get(1, [])) >= 10

    deadline = time.monotonic() + 10
    while not reported():
        assert time.monotonic() < deadline, "the route counts were not reported"
        time.sleep(0.05)
    routes = stack.routes(pb.STAGE_TYPE_POEM)
    primary = routes[0]
    assert sum(r.failed for r in primary) == 2
    assert sum(r.failovers for r in primary) == 10
    assert sum(r.breaker_opened for r in primary) == 1
    assert primary[-1].provider_kind == pb.PROVIDER_KIND_GEMINI
    assert primary[-1].breaker_state == pb.BREAKER_STATE_OPEN
    assert primary[-1].last_failure_cause == pb.STATUS_CAUSE_QUOTA
    assert routes[1][-1].provider_kind == pb.PROVIDER_KIND_OPENAI
    assert routes[1][-1].breaker_state == pb.BREAKER_STATE_CLOSED


def test_tasks_return_to_a_recovered_primary_after_the_cooldown(stack: Stack) -> None:
    key = GEMINI_KEYS["500"]
    stack.switch_poem(11, key)
    stack.fake.set_failure(ProviderKind.GEMINI, "server_error")
    try:
        before_opening = time.monotonic()
        assert all("gpt-4o-mini" in p["text"] for p in stack.poems(3, threshold=2, cooldown=2))
        assert stack.gemini_calls(key) == 2
    finally:
        stack.fake.set_failure(ProviderKind.GEMINI, None)
    deadline = time.monotonic() + 15
    while "gemini-2.5-flash" not in stack.poems(1, threshold=2, cooldown=2)[0]["text"]:
        assert time.monotonic() < deadline, "the tasks never came back to the primary"
        time.sleep(0.1)
    assert time.monotonic() - before_opening >= 2.0  # not before the cooldown
    assert stack.gemini_calls(key) == 3  # the one half-open trial, which answered
    assert all("gemini-2.5-flash" in p["text"] for p in stack.poems(3, threshold=2, cooldown=2))


def test_a_hanging_primary_is_waited_on_only_until_its_breaker_opens(stack: Stack) -> None:
    key = GEMINI_KEYS["hang"]
    stack.switch_poem(12, key)
    stack.fake.set_failure(ProviderKind.GEMINI, "hang")
    try:
        slow = stack.poems(2, call_timeout=1.0, threshold=2, cooldown=600)
        assert all(p["seconds"] >= 1.0 and "gpt-4o-mini" in p["text"] for p in slow)
        fast = stack.poems(5, call_timeout=1.0, threshold=2, cooldown=600)
        assert all(p["seconds"] < 0.9 and "gpt-4o-mini" in p["text"] for p in fast)
        assert stack.gemini_calls(key) == 2
    finally:
        stack.fake.set_failure(ProviderKind.GEMINI, None)


def test_the_voice_key_pool_moves_to_the_second_key(stack: Stack) -> None:
    stack.fake.fail_key(VOICE_KEYS[0], "quota")
    answers = [stack.tasks.run("probe.voice", text=f"line {i}", threshold=2) for i in range(4)]
    assert [a["audio"] for a in answers] == [f"MP3 alena: line {i}" for i in range(4)]
    used = [
        r.header("authorization")
        for r in stack.fake.requests
        if r.kind == ProviderKind.SPEECHKIT and r.method == "POST"
    ]
    assert used.count(f"Api-Key {VOICE_KEYS[0]}") == 2
    assert used.count(f"Api-Key {VOICE_KEYS[1]}") == 4
    deadline = time.monotonic() + 10
    while not stack.routes(pb.STAGE_TYPE_VOICE).get(1):
        assert time.monotonic() < deadline, "the VOICE routes were not reported"
        time.sleep(0.05)
    first_key = stack.routes(pb.STAGE_TYPE_VOICE)[0][-1]
    assert first_key.last_failure_cause == pb.STATUS_CAUSE_QUOTA
    assert first_key.api_key_fingerprint == "voice1"


def test_every_route_failing_fails_the_task_naming_each_route(stack: Stack) -> None:
    key = GEMINI_KEYS["all"]
    stack.switch_poem(13, key)
    stack.fake.fail_key(key, "quota")
    stack.fake.reject_key(OPENAI_KEY)  # OpenAI's 401 body quotes the key
    result = stack.tasks.app.send_task(
        "probe.poem", kwargs={"threshold": 2, "cooldown": 600}, queue=stack.tasks.queue
    )
    with pytest.raises(AllRoutesFailed) as caught:
        result.get(timeout=30)
    assert str(caught.value) == (
        "every route of POEM failed: primary GEMINI: QUOTA (429); fallback 1 OPENAI: AUTH (401)"
    )
    assert result.traceback is not None
    for secret in EVERY_KEY:
        assert secret not in result.traceback


def test_no_key_in_any_report_or_log_line(stack: Stack) -> None:
    # Last in the module: it reads everything the tests above made the worker do.
    wire = b"".join(r.request.SerializeToString() for r in stack.server.received)
    assert wire, "no report arrived"
    log = stack.worker.log
    assert "trying fallback 1 OPENAI" in log
    for secret in EVERY_KEY:
        assert secret.encode() not in wire
        assert secret not in log
