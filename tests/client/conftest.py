"""Fixtures for the synchronous client: a real server whose event loop runs in its own
thread (so a test can block on the client while the server keeps serving), and a sync
admin stub to change configs with."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine, Iterator, Mapping
from concurrent.futures import Future
from pathlib import Path
from typing import Any, TypeVar

import grpc
import pytest

from stageconfig_contract.v1 import stage_config_pb2 as pb
from stageconfig_contract.v1 import stage_config_pb2_grpc as pbg
from stageconfig_server.app import StageConfigApp
from tests.fakes.provider_server import FakeProviders
from tests.support.servers import start_app

T = TypeVar("T")

CACHE_KEY = "test-cache-key-0123456789abcdef"


class ThreadedServer:
    """A StageConfigApp served from a background event loop; restartable on its port."""

    def __init__(self, db_path: Path, fake: FakeProviders, **env: str) -> None:
        self.db_path = db_path
        self.fake = fake
        self.env = env
        self.port = 0
        self.app: StageConfigApp | None = None
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        self._channel: grpc.Channel | None = None

    def _run(self, coro: Coroutine[Any, Any, T], timeout: float = 30) -> T:
        future: Future[T] = asyncio.run_coroutine_threadsafe(coro, self._loop)
        return future.result(timeout)

    def start(self) -> ThreadedServer:
        """Start (again) on the same port and database."""
        env = {**self.env, "STAGECONFIG_ADDRESS": f"127.0.0.1:{self.port}"}
        self.app = self._run(start_app(self.db_path, self.fake, **env))
        self.port = self.app.port
        return self

    def stop(self, grace: float = 0.2) -> None:
        """Graceful stop (streams end, clients reconnect)."""
        if self.app is not None:
            app, self.app = self.app, None
            self._run(app.stop(grace))

    def close(self) -> None:
        self.stop()
        if self._channel is not None:
            self._channel.close()
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def stub(self) -> pbg.StageConfigServiceStub:
        if self._channel is None:
            self._channel = grpc.insecure_channel(self.target)
        return pbg.StageConfigServiceStub(self._channel)

    def update(
        self,
        stage: int,
        provider: int,
        *,
        api_key: str | None = None,
        model: str | None = None,
        options: Mapping[str, str] | None = None,
    ) -> pb.UpdateConfigResponse:
        """UpdateConfig; returns the stored config (key masked)."""
        request = pb.UpdateConfigRequest(stage_type=stage, provider_kind=provider)  # type: ignore[arg-type]
        if api_key is not None:
            request.api_key = api_key
        if model is not None:
            request.model = model
        request.options.update(options or {})
        response: pb.UpdateConfigResponse = self.stub.UpdateConfig(request, timeout=10)
        return response

    def voice(self, model: str, api_key: str = "AQVN-voice-key-0001") -> int:
        """Set VOICE (SpeechKit: no network, any key) and return the new revision."""
        return self.update(
            pb.STAGE_TYPE_VOICE, pb.PROVIDER_KIND_SPEECHKIT, api_key=api_key, model=model
        ).config.revision

    def head(self) -> int:
        response: pb.ListConfigsResponse = self.stub.ListConfigs(pb.ListConfigsRequest())
        return response.head_revision

    def watchers(self) -> pb.ListWatchersResponse:
        response: pb.ListWatchersResponse = self.stub.ListWatchers(pb.ListWatchersRequest())
        return response


def set_voice(target: str, model: str, api_key: str = "AQVN-voice-key-0001") -> int:
    """UpdateConfig of VOICE (SpeechKit: no network, any key) on the server at ``target``,
    over a channel of its own; the new revision."""
    with grpc.insecure_channel(target) as channel:
        request = pb.UpdateConfigRequest(
            stage_type=pb.STAGE_TYPE_VOICE,
            provider_kind=pb.PROVIDER_KIND_SPEECHKIT,
            api_key=api_key,
            model=model,
        )
        response = pbg.StageConfigServiceStub(channel).UpdateConfig(request, timeout=10)
    revision: int = response.config.revision
    return revision


@pytest.fixture
def server(db_path: Path, fake_providers: FakeProviders) -> Iterator[ThreadedServer]:
    """A running server (heartbeat 1 s) with an empty database."""
    threaded = ThreadedServer(db_path, fake_providers).start()
    try:
        yield threaded
    finally:
        threaded.close()


@pytest.fixture
def cache_key(monkeypatch: pytest.MonkeyPatch) -> str:
    """STAGECONFIG_CACHE_KEY set for the test."""
    monkeypatch.setenv("STAGECONFIG_CACHE_KEY", CACHE_KEY)
    return CACHE_KEY
