"""The worker-side distribution on its own: build the client's wheel from
``clients/python``, install it (with its ``celery`` extra) into a fresh virtualenv that
has nothing else, and use it against a real server — a ConfigClient script and the
example Celery app — as a worker project would."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from stageconfig_contract import __version__
from stageconfig_contract.v1 import stage_config_pb2 as pb
from stageconfig_contract.v1 import stage_config_pb2_grpc as pbg
from tests.admin.conftest import start_server
from tests.fakes.provider_server import FakeProviders
from tests.integration.support import REDIS_URL, CeleryWorker, TaskClient, unique_queue
from tests.support.servers import ServerProcess

REPO = Path(__file__).resolve().parents[2]
SERVER_ONLY = ("stageconfig_server", "stageconfig_web", "sqlalchemy", "starlette", "alembic")


def _uv() -> str:
    found = shutil.which("uv")
    if found is None:
        pytest.fail("uv is not installed (scripts/_env.sh installs it)")
    return found


@pytest.fixture(scope="module")
def client_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh virtualenv holding the client wheel with [celery] and nothing of ours else."""
    root = tmp_path_factory.mktemp("client-install")
    env = {**os.environ, "UV_PYTHON_DOWNLOADS": "never"}
    env.pop("VIRTUAL_ENV", None)
    subprocess.run(
        [_uv(), "build", "--quiet", "--wheel", "--out-dir", str(root / "dist"), "clients/python"],
        cwd=REPO, env=env, check=True, timeout=300,
    )  # fmt: skip
    (wheel,) = (root / "dist").glob("stageconfig-*.whl")
    assert wheel.name.startswith(f"stageconfig-{__version__}-")
    venv = root / "venv"
    subprocess.run(
        [_uv(), "venv", "--quiet", "--python", "python3", str(venv)], env=env, check=True
    )
    # The lock pins what a worker project would resolve; only the client's dependencies
    # are installed (constraints never add packages).
    subprocess.run(
        [_uv(), "pip", "install", "--quiet", "--python", str(venv / "bin" / "python"),
         f"{wheel}[celery]", "--constraint", str(REPO / "requirements.lock")],
        env=env, check=True, timeout=600,
    )  # fmt: skip
    return venv


def _run(venv: Path, code: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in {"PYTHONPATH", "VIRTUAL_ENV"}}
    return subprocess.run(
        [str(venv / "bin" / "python"), "-c", code],
        cwd=venv, env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip


@pytest.fixture
def server_with_poem(tmp_path: Path, fake_providers: FakeProviders) -> Iterator[ServerProcess]:
    server = start_server(tmp_path / "stageconfig.db", fake_providers)
    try:
        with grpc.insecure_channel(server.target) as channel:
            pbg.StageConfigServiceStub(channel).UpdateConfig(
                pb.UpdateConfigRequest(
                    stage_type=pb.STAGE_TYPE_POEM,
                    provider_kind=pb.PROVIDER_KIND_OPENAI,
                    api_key="sk-proj-package-test-0000000001",
                    model="gpt-4o-mini",
                ),
                timeout=30,
            )
        yield server
    finally:
        server.stop()


def test_the_client_installs_alone(client_venv: Path) -> None:
    probe = _run(
        client_venv,
        "import importlib.util, stageconfig, stageconfig_contract, stageconfig.contrib.celery\n"
        f"print([m for m in {SERVER_ONLY!r} if importlib.util.find_spec(m)])\n"
        "print(stageconfig_contract.__version__, stageconfig.__file__)",
    )
    assert probe.returncode == 0, probe.stderr
    found, version_and_path = probe.stdout.splitlines()
    assert found == "[]", "the client distribution must not bring server code or deps"
    version, path = version_and_path.split()
    assert version == __version__
    assert path.startswith(str(client_venv)), "imported from the clone, not the install"
    for tool in ("stageconfigctl", "stageconfig-agent"):
        run = subprocess.run(
            [str(client_venv / "bin" / tool), "--help"],
            capture_output=True, text=True, check=False, timeout=60,
        )  # fmt: skip
        assert run.returncode == 0, run.stderr


def test_installed_client_reads_a_server(
    client_venv: Path, server_with_poem: ServerProcess
) -> None:
    code = f"""
from stageconfig import ConfigClient, StageType
with ConfigClient({server_with_poem.target!r}) as client:
    client.wait_ready(timeout=20)
    poem = client.get(StageType.POEM)
    print(poem.provider_kind, poem.model, client.applied_revision)
"""
    proc = _run(client_venv, code)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split()[:2] == ["OPENAI", "gpt-4o-mini"]


def test_installed_client_runs_the_celery_example(
    client_venv: Path, server_with_poem: ServerProcess
) -> None:
    queue = unique_queue("client-install")
    worker = CeleryWorker(
        {
            "STAGECONFIG_TARGET": server_with_poem.target,
            "EXAMPLE_QUEUE": queue,
            "CELERY_BROKER_URL": REDIS_URL,
        },
        queue,
        pool="solo",
        concurrency=1,
        python=str(client_venv / "bin" / "python"),
    ).start(timeout=60)
    tasks = TaskClient(queue)
    try:
        report = tasks.run("example.poem_config", timeout=30)
        assert report["provider"] == "OPENAI"
        assert report["model"] == "gpt-4o-mini"
    finally:
        tasks.close()
        worker.stop()
