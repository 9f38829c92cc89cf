"""An example Celery app whose tasks take their AI provider, key and model from
stageconfig — hot: an admin's change reaches every worker process at once, no restart.

Run it (from this directory)::

    export STAGECONFIG_TARGET=127.0.0.1:50051      # the stageconfig server
    export STAGECONFIG_TOKEN=…                     # a worker token (if the server has tokens)
    export STAGECONFIG_CACHE_PATH=/var/lib/pipeline/stageconfig.json   # optional, with:
    export STAGECONFIG_CACHE_KEY=…                 # the secret the file's keys are encrypted with
    export CELERY_BROKER_URL=redis://127.0.0.1:6379/0
    celery -A celery_app worker --pool=prefork --concurrency=2

    python -c "from celery_app import write_poem; print(write_poem.delay('the sea').get())"

Tasks: ``example.poem_config`` / ``voice_config`` / ``song_config`` / ``clip_config``
report the provider and model each stage would use right now (and which process
answered); ``example.write_poem`` really writes a poem through ``ProviderFactory`` with
the POEM stage's provider and model (and its fallback routes when the primary fails).
"""

from __future__ import annotations

import os
from typing import Any

from celery import Celery

from stageconfig import StageType, TimingOptions
from stageconfig.contrib.celery import current_client, current_config, setup_stageconfig
from stageconfig.providers import ProviderFactory

BROKER_URL = os.environ.get("CELERY_BROKER_URL", "redis://127.0.0.1:6379/0")

app = Celery(
    "stageconfig_example",
    broker=BROKER_URL,
    backend=os.environ.get("CELERY_RESULT_BACKEND", BROKER_URL),
)
app.conf.update(
    task_default_queue=os.environ.get("EXAMPLE_QUEUE", "celery"),
    worker_prefetch_multiplier=1,  # an idle process takes the next task
    result_expires=3600,
    broker_connection_retry_on_startup=True,
)

# Returns at once: each worker process starts its own client (see stageconfig.contrib.celery).
setup_stageconfig(
    app,
    target=os.environ.get("STAGECONFIG_TARGET", "127.0.0.1:50051"),
    token=os.environ.get("STAGECONFIG_TOKEN") or None,
    cache_path=os.environ.get("STAGECONFIG_CACHE_PATH") or None,
    timing=TimingOptions(
        backoff_max_seconds=float(os.environ.get("STAGECONFIG_BACKOFF_MAX_SECONDS", "30")),
        # How often each process reports what it applied and how its tasks went.
        report_interval_seconds=float(os.environ.get("STAGECONFIG_REPORT_INTERVAL_SECONDS", "30")),
    ),
)


def stage_report(stage: StageType) -> dict[str, Any]:
    """What this process would use for ``stage`` right now."""
    config = current_config(stage)  # memory only: no network per task
    client = current_client()
    return {
        "pid": os.getpid(),
        "stage": stage.value,
        "provider": config.provider_kind.value,
        "model": config.model,
        "revision": config.revision,
        "applied_revision": client.applied_revision,
        "state": client.state.value,
    }


@app.task(name="example.poem_config")
def poem_config() -> dict[str, Any]:
    """The POEM stage's provider and model in this worker process."""
    return stage_report(StageType.POEM)


@app.task(name="example.voice_config")
def voice_config() -> dict[str, Any]:
    """The VOICE stage's provider and voice in this worker process."""
    return stage_report(StageType.VOICE)


@app.task(name="example.song_config")
def song_config() -> dict[str, Any]:
    """The SONG stage's provider and model in this worker process."""
    return stage_report(StageType.SONG)


@app.task(name="example.clip_config")
def clip_config() -> dict[str, Any]:
    """The CLIP stage's provider and endpoint in this worker process."""
    return stage_report(StageType.CLIP)


@app.task(name="example.write_poem")
def write_poem(topic: str) -> dict[str, Any]:
    """Write a poem about ``topic`` with the POEM stage's current provider and model."""
    config = current_config(StageType.POEM)
    poet = ProviderFactory.text_generator(config)  # model is named per call: config.model
    poem = poet.generate(f"Write a short poem about {topic}.", system="You are a poet.")
    return {
        "pid": os.getpid(),
        "provider": config.provider_kind.value,
        "model": config.model,
        "revision": config.revision,
        "poem": poem,
    }
