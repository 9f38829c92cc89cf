"""An attached process against a real agent (subprocess) and a real server: the states
(CONNECTING, READY, STALE when the agent's heartbeat lapses, READY again after a
restart, CLOSED), wait_ready's deadline, on_change, the cached snapshot, validators and
their NACK reaching the fleet view through the agent, task outcomes, and no grpc and no
thread in the attached process."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from stageconfig import (
    AttachedClient,
    ClientState,
    ConfigChangeEvent,
    NotReadyError,
    Route,
    StageConfig,
    StageType,
    attach,
)
from stageconfig.providers import default_registry, run_with_fallback
from stageconfig_contract.v1 import stage_config_pb2 as pb
from tests.agent.support import AgentProcess, shm_dir, wait_for
from tests.client.conftest import ThreadedServer


@pytest.fixture
def directory() -> Iterator[Path]:
    with shm_dir() as path:
        yield path


@pytest.fixture
def agent(server: ThreadedServer, directory: Path) -> Iterator[AgentProcess]:
    running = AgentProcess(server.target, directory).start()
    try:
        yield running
    finally:
        running.stop()


def test_states_follow_the_agent(server: ThreadedServer, directory: Path) -> None:
    server.voice("alena")
    agent = AgentProcess(server.target, directory)
    client = AttachedClient(agent.paths.segment, stages=[StageType.VOICE]).start()
    assert client.state is ClientState.CONNECTING
    started = time.monotonic()
    with pytest.raises(NotReadyError, match=r"within 0\.2 s"):
        client.wait_ready(0.2)
    assert time.monotonic() - started < 2.0
    agent.start()
    try:
        client.wait_ready(10)
        assert client.get(StageType.VOICE).model == "alena"
        agent.kill()
        # The last snapshot is still served; STALE once the heartbeat lapses (1 s).
        wait_for(lambda: client.state is ClientState.STALE, 10, "STALE")
        assert client.get("VOICE").model == "alena"
        agent.start()
        client.wait_ready(10)
        revision = server.voice("filipp")
        wait_for(lambda: client.get(StageType.VOICE).revision == revision, 5, "the new revision")
        assert client.applied_revision == revision
    finally:
        agent.stop()
    wait_for(lambda: client.state is ClientState.STALE, 5, "STALE after a clean stop")
    client.close()
    assert client.state is ClientState.CLOSED


def test_get_answers_from_the_cached_snapshot_until_the_generation_moves(
    server: ThreadedServer, agent: AgentProcess
) -> None:
    server.voice("alena")
    client = attach(agent.paths.segment)
    client.wait_ready(10)
    first = client.get(StageType.VOICE)
    assert client.get(StageType.VOICE) is first  # no decode while the generation stands
    assert client.snapshot().configs[StageType.VOICE] is first
    revision = server.voice("ermil")
    wait_for(lambda: client.get(StageType.VOICE) is not first, 5, "the new generation")
    assert client.get(StageType.VOICE).revision == revision
    assert client.get(StageType.VOICE) is client.get(StageType.VOICE)
    client.close()


def _attached_threads() -> int:
    return sum(t.name == "stageconfig-attached" for t in threading.enumerate())


def test_on_change_runs_on_one_listener_thread(server: ThreadedServer, agent: AgentProcess) -> None:
    server.voice("alena")
    client = attach(agent.paths.segment)
    client.wait_ready(10)
    assert _attached_threads() == 0  # no listener, no thread
    events: list[ConfigChangeEvent] = []
    client.on_change(events.append)
    client.on_state(lambda _: None)
    assert _attached_threads() == 1
    revision = server.voice("zahar")
    wait_for(lambda: any(e.revision == revision for e in events), 5, "the change event")
    (event,) = [e for e in events if e.revision == revision]
    assert event.stages == {StageType.VOICE}
    new = event.changes[0].new
    assert new is not None
    assert new.model == "zahar"
    client.close()
    assert _attached_threads() == 0


def _fleet_client(server: ThreadedServer, client_id: str) -> pb.FleetClient | None:
    status = server.stub.GetFleetStatus(pb.GetFleetStatusRequest(), timeout=10)
    return next((c for c in status.clients if c.client_id == client_id), None)


def test_a_refusal_keeps_the_previous_config_and_reaches_the_fleet_view(
    server: ThreadedServer, agent: AgentProcess
) -> None:
    good = server.voice("alena")
    client = AttachedClient(
        agent.paths.segment, client_id="worker-a/1", report_interval_seconds=1
    ).start()

    def refuse(config: StageConfig) -> None:
        if config.model == "ermil":
            raise ValueError(f"model {config.model} is banned; key {config.api_key}")

    client.add_validator(refuse)
    client.wait_ready(10)
    refused = server.voice("ermil", api_key="AQVN-refused-secret-0002")
    wait_for(lambda: client.snapshot().revision == refused, 5, "the refused revision read")
    assert client.get(StageType.VOICE).revision == good  # the previous config stays
    assert client.applied_revision == refused - 1
    client.record_outcome(StageType.VOICE, False, "Timeout", 0.2)

    def nack_reported() -> bool:
        reported = _fleet_client(server, "worker-a/1")
        if reported is None:
            return False
        voice = next(s for s in reported.stages if s.stage_type == pb.STAGE_TYPE_VOICE)
        return voice.nack_revision == refused

    wait_for(nack_reported, 10, "the NACK in GetFleetStatus")
    reported = _fleet_client(server, "worker-a/1")
    assert reported is not None
    assert reported.applied_revision == refused - 1
    voice = next(s for s in reported.stages if s.stage_type == pb.STAGE_TYPE_VOICE)
    assert "AQVN-refused-secret-0002" not in voice.nack_reason  # masked before it left
    fixed = server.voice("jane")
    wait_for(lambda: client.get(StageType.VOICE).revision == fixed, 5, "the next good revision")
    assert client.applied_revision == fixed
    client.close()  # hands the unsent outcome to the agent

    def outcome_reported() -> bool:
        reported = _fleet_client(server, "worker-a/1") or pb.FleetClient()
        return any(o.failed == 1 for s in reported.stages for o in s.outcomes)

    wait_for(outcome_reported, 10, "the task outcome in GetFleetStatus")


def test_an_attached_process_imports_no_grpc(server: ThreadedServer, agent: AgentProcess) -> None:
    server.voice("alena")
    script = (
        "import sys, threading\n"
        "import stageconfig\n"
        f"c = stageconfig.attach({str(agent.paths.segment)!r})\n"
        "c.wait_ready(10)\n"
        "c.record_outcome('VOICE', True)\n"
        "print(c.get(stageconfig.StageType.VOICE).model, 'grpc' in sys.modules,"
        " threading.active_count())\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True
    )
    assert out.stdout.split() == ["alena", "False", "1"], out.stderr


def test_route_health_of_an_attached_process_reaches_the_fleet_view(
    server: ThreadedServer, agent: AgentProcess
) -> None:
    # A VOICE key pool: the primary key is out of credits, the second one works.
    request = pb.UpdateConfigRequest(
        stage_type=pb.STAGE_TYPE_VOICE,
        provider_kind=pb.PROVIDER_KIND_SPEECHKIT,
        api_key="AQVN-pool-first-0001",
        model="alena",
        fallbacks=[
            pb.RouteUpdate(
                provider_kind=pb.PROVIDER_KIND_SPEECHKIT,
                api_key="AQVN-pool-second-0002",
                model="alena",
            )
        ],
    )
    server.stub.UpdateConfig(request, timeout=10)
    client = AttachedClient(
        agent.paths.segment, client_id="worker-routes/1", report_interval_seconds=1
    ).start()
    client.wait_ready(10)
    config = client.get(StageType.VOICE)
    assert [r.api_key for r in config.fallbacks] == ["AQVN-pool-second-0002"]  # plaintext

    def synthesize(route: Route) -> str:
        if route.api_key == "AQVN-pool-first-0001":  # the provider's "no credits" answer
            answer = httpx.Response(402, request=httpx.Request("POST", "http://tts.invalid"))
            raise httpx.HTTPStatusError("payment required", request=answer.request, response=answer)
        return route.api_key[-4:]

    breakers = default_registry()
    assert run_with_fallback(config, synthesize, breakers=breakers) == "0002"
    client.record_outcome(StageType.VOICE, True, None, 0.1)
    client.close()  # hands the report to the agent

    def routes_reported() -> list[pb.RouteReport]:
        reported = _fleet_client(server, "worker-routes/1") or pb.FleetClient()
        return [r for s in reported.stages for r in s.routes]

    wait_for(lambda: len(routes_reported()) == 2, 10, "both routes in GetFleetStatus")
    primary, second = sorted(routes_reported(), key=lambda r: r.route_index)
    assert (primary.failed, primary.failovers, primary.last_failure_cause) == (
        1,
        1,
        pb.STATUS_CAUSE_QUOTA,
    )
    assert (second.route_index, second.succeeded) == (1, 1)
    stage = server.stub.GetFleetStatus(pb.GetFleetStatusRequest(stage_type=pb.STAGE_TYPE_VOICE))
    assert "AQVN-pool" not in str(stage)


def test_a_host_in_a_rollout_cohort_gives_the_candidate_to_its_processes(
    server: ThreadedServer, agent: AgentProcess
) -> None:
    stable = server.voice("alena")
    client = AttachedClient(
        agent.paths.segment, client_id="worker-canary/1", report_interval_seconds=1
    ).start()
    client.wait_ready(10)
    wait_for(lambda: len(server.watchers().watchers) == 1, 10, "the agent's stream")
    (agent_stream,) = server.watchers().watchers
    # The cohort is chosen by the agent's id: every process on the host is on its side.
    assert agent_stream.client_id.endswith(f"/stageconfig-agent/{os.getuid()}")
    request = pb.UpdateConfigRequest(
        stage_type=pb.STAGE_TYPE_VOICE,
        provider_kind=pb.PROVIDER_KIND_SPEECHKIT,
        model="jane",
        rollout=pb.RolloutSpec(client_ids=[agent_stream.client_id]),
    )
    candidate = server.stub.UpdateConfig(request, timeout=10).rollout.candidate_revision
    assert candidate > stable
    wait_for(lambda: client.get(StageType.VOICE).model == "jane", 5, "the candidate")
    client.record_outcome(StageType.VOICE, True, None, 0.1)

    def sides() -> tuple[int, int]:
        stages = server.stub.ListConfigs(pb.ListConfigsRequest(), timeout=10).stages
        (voice,) = [s for s in stages if s.stage_type == pb.STAGE_TYPE_VOICE]
        return voice.rollout.canary.clients, voice.rollout.stable.clients

    # The agent's stream and the process reporting through it, both on the canary side.
    wait_for(lambda: sides() == (2, 0), 10, "the canary side counting the process")
    client.close()
