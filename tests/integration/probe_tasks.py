"""Tasks the integration tests add to the example app's workers (``celery worker -I``).

``probe.report`` is the example's stage report with a hold (so a batch of them keeps
every pool process busy and each one answers) and the time it ran; ``probe.events``
returns every config change this process applied, with the wall-clock time it applied
it (the propagation measurement reads that).

Fallback routes: ``probe.poem`` writes a poem through ``ProviderFactory`` with the
breaker settings and timeout it is given, and says which route answered and how long it
took; ``probe.voice`` synthesizes speech through the VOICE stage's key pool.

Fleet truth: every process refuses (a validator) any config whose model contains
``refused``; ``probe.work`` reads a stage's config and fails with ``ModelUnavailable``
when its model contains ``failing``; ``probe.flaky`` is retried once, then succeeds.
"""

from __future__ import annotations

import os
import time
from typing import Any

from celery import signals
from celery_app import app, stage_report

from stageconfig import ConfigChangeEvent, StageConfig, StageType
from stageconfig.contrib.celery import current_client, current_config
from stageconfig.providers import BreakerSettings, ProviderFactory, SpeechKitClient

_events: list[dict[str, Any]] = []
_recording_in = 0


def _record(event: ConfigChangeEvent) -> None:
    _events.append(
        {
            "revision": event.revision,
            "source": event.source.value,
            "stages": sorted(event.stages),
            "at": time.time(),
        }
    )


class ModelUnavailable(RuntimeError):
    """What ``probe.work`` raises with a ``failing-`` model (its cause in the reports)."""


def _refuse_models(config: StageConfig) -> None:
    if "refused" in config.model:
        raise ValueError(f"model {config.model} is not allowed on this worker")


def _ensure_recorder() -> None:
    global _recording_in
    if _recording_in == os.getpid():
        return
    _recording_in = os.getpid()
    client = current_client()
    client.add_validator(_refuse_models)
    client.on_change(_record)
    if client.applied_revision:  # already held before the listener was added
        snapshot = client.snapshot()
        _events.append(
            {"revision": snapshot.revision, "source": "HELD", "stages": [], "at": time.time()}
        )


@signals.worker_process_init.connect(weak=False)
def _on_process_init(**_: Any) -> None:
    # Connected after setup_stageconfig's receiver (celery_app is imported first), so
    # the client exists; the listener is in place before its first snapshot arrives.
    _ensure_recorder()


@app.task(name="probe.report")
def report(stage: str = "POEM", hold: float = 0.0) -> dict[str, Any]:
    """The stage's report from this process (read when the task starts; the answer
    comes after ``hold`` seconds)."""
    _ensure_recorder()
    ran_at = time.time()
    result = {**stage_report(StageType(stage)), "ran_at": ran_at}
    if hold:
        time.sleep(hold)
    return result


@app.task(name="probe.events")
def events(hold: float = 0.0) -> dict[str, Any]:
    """Every config change this process applied, after ``hold`` seconds."""
    _ensure_recorder()
    if hold:
        time.sleep(hold)
    client = current_client()
    return {
        "pid": os.getpid(),
        "events": list(_events),
        "applied_revision": client.applied_revision,
        "state": client.state.value,
    }


@app.task(name="probe.work")
def work(stage: str = "POEM", hold: float = 0.0) -> dict[str, Any]:
    """A task that uses ``stage``'s config: fails when its model contains ``failing``,
    else answers which model and revision it used."""
    _ensure_recorder()
    config = current_config(StageType(stage))
    if hold:
        time.sleep(hold)
    if "failing" in config.model:
        raise ModelUnavailable(f"{config.model} answers nothing")
    return {"pid": os.getpid(), "model": config.model, "revision": config.revision}


@app.task(name="probe.flaky", bind=True, max_retries=1, default_retry_delay=0)
def flaky(self: Any, stage: str = "POEM") -> dict[str, Any]:
    """Reads ``stage``'s config, asks to be retried once, then succeeds."""
    _ensure_recorder()
    config = current_config(StageType(stage))
    if self.request.retries == 0:
        raise self.retry(countdown=0)
    return {"pid": os.getpid(), "revision": config.revision}


@app.task(name="probe.poem")
def poem(call_timeout: float = 120.0, threshold: int = 3, cooldown: float = 5.0) -> dict[str, Any]:
    """A poem from the POEM stage's routes; the time the generation took."""
    config = current_config(StageType.POEM)
    settings = BreakerSettings(
        failure_threshold=threshold,
        base_cooldown_seconds=cooldown,
        max_cooldown_seconds=max(cooldown, 300.0),
    )
    poet = ProviderFactory.text_generator(
        config, timeout_seconds=call_timeout, breaker_settings=settings
    )
    started = time.monotonic()
    text = poet.generate("Write a short poem about the sea.")
    return {
        "pid": os.getpid(),
        "revision": config.revision,
        "text": text,
        "seconds": time.monotonic() - started,
    }


@app.task(name="probe.voice")
def voice(text: str = "Hello", threshold: int = 3) -> dict[str, Any]:
    """Speech from the VOICE stage's key pool."""
    config = current_config(StageType.VOICE)
    client = ProviderFactory.create(
        config, breaker_settings=BreakerSettings(failure_threshold=threshold)
    )
    assert isinstance(client, SpeechKitClient)
    return {"pid": os.getpid(), "audio": client.synthesize(text).decode()}
