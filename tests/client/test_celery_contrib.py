"""stageconfig.contrib.celery outside a worker: current_config starts the client lazily
(scripts, eager tasks, tests) and answers from memory. The worker signals are covered
by the integration tests, with real workers."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from celery import Celery

from stageconfig import NotReadyError, StageType
from stageconfig.contrib import celery as contrib
from tests.client.conftest import ThreadedServer
from tests.client.test_client import free_port


@pytest.fixture
def celery_app() -> Iterator[Celery]:
    app = Celery("contrib-test")
    yield app
    contrib.close_client()
    app.close()


def test_current_config_starts_a_client_lazily(server: ThreadedServer, celery_app: Celery) -> None:
    server.voice("alena")
    contrib.setup_stageconfig(celery_app, target=server.target, stages=[StageType.VOICE])
    config = contrib.current_config(StageType.VOICE)
    assert config.model == "alena"
    client = contrib.current_client()
    assert client is contrib.current_client()  # one per process
    assert client.stages == {StageType.VOICE}


def test_current_config_waits_at_most_the_ready_timeout(celery_app: Celery) -> None:
    contrib.setup_stageconfig(celery_app, target=f"127.0.0.1:{free_port()}", ready_timeout=0.3)
    with pytest.raises(NotReadyError, match=r"within 0\.3 s"):
        contrib.current_config(StageType.POEM)
