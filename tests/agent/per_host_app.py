"""A Celery app whose workers take their config from the host's stageconfig-agent
(``setup_stageconfig(per_host=True)``), for tests/agent/test_per_host_celery.py.

``agent.probe`` answers, from the process that ran it: its pid, what it read (VOICE's
model and revision, the state, the applied revision), whether grpc is imported there,
its cwd and temp dir, and when it read the config.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from typing import Any

from celery import Celery

from stageconfig import StageType, TimingOptions
from stageconfig.contrib.celery import current_client, current_config, setup_stageconfig

BROKER_URL = os.environ["CELERY_BROKER_URL"]

app = Celery("per_host_test", broker=BROKER_URL, backend=BROKER_URL)
app.conf.update(
    worker_prefetch_multiplier=1,
    result_expires=600,
    broker_connection_retry_on_startup=True,
)

setup_stageconfig(
    app,
    target=os.environ["STAGECONFIG_TARGET"],
    cache_path=os.environ.get("STAGECONFIG_CACHE_PATH") or None,
    stages=[StageType.VOICE],
    timing=TimingOptions(backoff_max_seconds=1, report_interval_seconds=1),
    per_host=True,
)


def _refuse(config: Any) -> None:
    if "refused" in config.model:
        raise ValueError(f"model {config.model} is not allowed here")


_validating_in = 0


@app.task(name="agent.probe")
def probe(hold: float = 0.0) -> dict[str, Any]:
    """What this process serves now (see the module)."""
    global _validating_in
    if _validating_in != os.getpid():
        _validating_in = os.getpid()
        current_client().add_validator(_refuse)
    config = current_config(StageType.VOICE)
    read_at = time.time()
    client = current_client()
    if hold:
        time.sleep(hold)
    return {
        "pid": os.getpid(),
        "ppid": os.getppid(),
        "model": config.model,
        "revision": config.revision,
        "state": client.state.value,
        "applied_revision": client.applied_revision,
        "client": type(client).__name__,
        "grpc_imported": "grpc" in sys.modules,
        "cwd": os.getcwd(),
        "tmp": tempfile.gettempdir(),
        "read_at": read_at,
    }
