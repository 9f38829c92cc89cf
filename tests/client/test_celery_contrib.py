"""stageconfig.contrib.celery outside a worker: current_config starts the client lazily
(scripts, eager tasks, tests) and answers from memory; eager tasks are recorded (the
stages they read, success, failure with its cause, retry) in the reports. The worker
signals are covered by the integration tests, with real workers."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from celery import Celery

from stageconfig import NotReadyError, StageType, TimingOptions
from stageconfig.contrib import celery as contrib
from stageconfig_contract.v1 import stage_config_pb2 as pb
from tests.client.conftest import ThreadedServer
from tests.client.newer_server import config, serve, snapshot
from tests.client.report_recorder import ReportRecorder
from tests.client.test_client import free_port, wait_until


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


def test_eager_tasks_are_recorded_for_the_revision_they_read(celery_app: Celery) -> None:
    # The recording server, so the test reads exactly what the reports carry.
    servicer = ReportRecorder(
        snapshot(4, config(pb.STAGE_TYPE_VOICE, pb.PROVIDER_KIND_SPEECHKIT, 4, "alena"))
    )
    server, target = serve(servicer)
    try:
        contrib.setup_stageconfig(
            celery_app,
            target=target,
            stages=[StageType.VOICE],
            timing=TimingOptions(report_interval_seconds=0.3),
        )

        class Boom(Exception):
            pass

        @celery_app.task(bind=True, max_retries=1)
        def voice_task(self: object, mode: str) -> str:
            model = contrib.current_config(StageType.VOICE).model
            if mode == "fail":
                raise Boom(model)
            if mode == "retry":
                raise voice_task.retry(countdown=0)  # type: ignore[attr-defined]
            return model

        @celery_app.task
        def reads_nothing() -> int:
            return 1

        assert voice_task.apply(args=("ok",)).get() == "alena"
        assert voice_task.apply(args=("fail",)).state == "FAILURE"
        voice_task.apply(args=("retry",))  # eager: retried in place once, then fails
        reads_nothing.apply()

        wait_until(
            lambda: sum(servicer.tasks_counted(pb.STAGE_TYPE_VOICE)) >= 4, 5, "outcomes reported"
        )
        assert servicer.tasks_counted(pb.STAGE_TYPE_VOICE) == (1, 2, 1)
        causes: dict[str, int] = {}
        for report in servicer.counted():
            for outcome in servicer.stage(report, pb.STAGE_TYPE_VOICE).outcomes:
                assert outcome.revision == 4
                for cause, count in outcome.failures_by_cause.items():
                    causes[cause] = causes.get(cause, 0) + count
        # Boom is local (Celery cannot pickle it and wraps it): its own name still counts.
        assert causes == {"Boom": 1, "MaxRetriesExceededError": 1}
    finally:
        contrib.close_client()
        server.stop(0)
