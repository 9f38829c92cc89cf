"""Fallback routes end to end with the real server (port 0, SQLite file, the fake
providers verifying every route's key): an admin stores a POEM primary with a fallback
and a VOICE key pool; a worker's ConfigClient gets them with plaintext keys, the
last-known-good file keeps them (encrypted), ProviderFactory serves from the fallback
while the primary is out of quota, and GetFleetStatus shows the primary failing with
its breaker open and the fallback serving — from the worker's reports."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from stageconfig import ConfigClient, ProviderKind, StageType, TimingOptions
from stageconfig.providers import BreakerSettings, ProviderFactory
from stageconfig_contract.v1 import stage_config_pb2 as pb
from tests.client.conftest import CACHE_KEY, ThreadedServer
from tests.client.test_client import wait_until
from tests.fakes.provider_server import FakeProviders
from tests.support.configs import poem_with_openai_fallback

GEMINI_KEY = "AIza-withserver-primary-41"
OPENAI_KEY = "sk-withserver-fallback-42"
VOICE_KEYS = ("AQVN-withserver-voice-43", "AQVN-withserver-voice-44")


def store_routes(server: ThreadedServer, gemini_key: str = GEMINI_KEY) -> None:
    """POEM: GEMINI, then OPENAI; VOICE: a pool of two SpeechKit keys. The process's
    breakers follow the key: each test names its own primary key."""
    server.stub.UpdateConfig(poem_with_openai_fallback(gemini_key, OPENAI_KEY), timeout=10)
    server.stub.UpdateConfig(
        pb.UpdateConfigRequest(
            stage_type=pb.STAGE_TYPE_VOICE,
            provider_kind=pb.PROVIDER_KIND_SPEECHKIT,
            api_key=VOICE_KEYS[0],
            model="alena",
            fallbacks=[
                pb.RouteUpdate(
                    provider_kind=pb.PROVIDER_KIND_SPEECHKIT, api_key=VOICE_KEYS[1], model="alena"
                )
            ],
        ),
        timeout=10,
    )


def test_stored_routes_serve_a_worker_and_come_back_in_its_reports(
    server: ThreadedServer,
    fake_providers: FakeProviders,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("STAGECONFIG_CACHE_KEY", CACHE_KEY)
    store_routes(server)
    cache = tmp_path / "lkg.json"
    timing = TimingOptions(report_interval_seconds=0.3)
    with ConfigClient(server.target, cache_path=cache, timing=timing) as client:
        client.wait_ready(10)
        poem = client.get(StageType.POEM)
        (fallback,) = poem.fallbacks
        assert (fallback.provider_kind, fallback.api_key, fallback.index) == (
            ProviderKind.OPENAI,
            OPENAI_KEY,
            1,
        )
        assert fallback.api_key_fingerprint
        assert [r.api_key for r in client.get(StageType.VOICE).routes()] == list(VOICE_KEYS)

        fake_providers.set_failure(ProviderKind.GEMINI, "quota")
        # This process's breakers (the default): the ones the client reports.
        poet = ProviderFactory.text_generator(
            poem,
            env=fake_providers.env(),
            breaker_settings=BreakerSettings(failure_threshold=1, base_cooldown_seconds=60),
        )
        assert all("gpt-4o-mini" in poet.generate("x") for _ in range(3))
        assert fake_providers.count(ProviderKind.GEMINI) == 1

        def fleet_routes() -> list[pb.RouteFleetStatus]:
            request = pb.GetFleetStatusRequest(stage_type=pb.STAGE_TYPE_POEM)
            (stage,) = server.stub.GetFleetStatus(request, timeout=10).stages
            return list(stage.routes)

        wait_until(
            lambda: sum(r.succeeded for r in fleet_routes()) == 3, 5, "the fleet view of the routes"
        )
        primary, fallback_route = sorted(fleet_routes(), key=lambda r: r.route_index)
        assert (primary.route_index, primary.provider_kind) == (0, pb.PROVIDER_KIND_GEMINI)
        assert (primary.clients, primary.clients_open) == (1, 1)
        assert (primary.failed, primary.failovers) == (1, 3)
        assert primary.failure_cause == pb.STATUS_CAUSE_QUOTA
        assert primary.api_key_fingerprint == poem.api_key_fingerprint
        assert (fallback_route.route_index, fallback_route.provider_kind) == (
            1,
            pb.PROVIDER_KIND_OPENAI,
        )
        assert (fallback_route.clients_open, fallback_route.succeeded) == (0, 3)
        wait_until(cache.exists, 5, "the last-known-good file")
    # The last-known-good file serves the routes (keys decrypted) with the server away.
    server.stop()
    with ConfigClient(server.target, cache_path=cache) as offline:
        offline.start()
        assert offline.get(StageType.POEM).fallbacks == poem.fallbacks
    written = cache.read_text()
    for key in (GEMINI_KEY, OPENAI_KEY, *VOICE_KEYS):
        assert key not in written


def test_the_docs_run_with_fallback_example_runs(
    server: ThreadedServer,
    fake_providers: FakeProviders,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    page = (Path(__file__).parents[2] / "docs" / "fallbacks.md").read_text()
    worker_section = page.split("## In the worker", 1)[1]
    example = next(
        b for b in re.findall(r"```python\n(.*?)```", worker_section, re.S) if "def write" in b
    )
    for name, value in fake_providers.env().items():
        monkeypatch.setenv(name, value)
    store_routes(server, "AIza-withserver-docs-45")
    fake_providers.set_failure(ProviderKind.GEMINI, "server_error")
    with ConfigClient(server.target) as client:
        client.wait_ready(10)
        exec(compile(example, "fallbacks.md", "exec"), {"client": client})
    assert capsys.readouterr().out == "A poem by gpt-4o-mini:\n"
    assert fake_providers.count(ProviderKind.GEMINI) == 1
