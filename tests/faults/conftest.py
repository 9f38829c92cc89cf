"""Fixtures and small probes shared by the fault tests: a private PostgreSQL cluster, a
tiny filesystem, health checks and deadline waits."""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from stageconfig_contract.v1 import stage_config_pb2 as pb
from tests.faults.pg_cluster import PrivatePostgres, unavailable_reason

SERVICE = "stageconfig.v1.StageConfigService"
HEALTH_SERVICES = ("", SERVICE)
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


def voice_update(model: str, api_key: str = "AQVN-fault-test-key-0001") -> pb.UpdateConfigRequest:
    """An UpdateConfig of VOICE (SpeechKit: no provider network, any key works)."""
    return pb.UpdateConfigRequest(
        stage_type=pb.STAGE_TYPE_VOICE,
        provider_kind=pb.PROVIDER_KIND_SPEECHKIT,
        api_key=api_key,
        model=model,
    )


async def wait_until(predicate: Callable[[], bool], within: float, what: str) -> float:
    """Poll ``predicate`` until true; returns the seconds it took; fails at the deadline."""
    started = time.monotonic()
    while not predicate():
        if time.monotonic() - started > within:
            raise AssertionError(f"not within {within:g} s: {what}")
        await asyncio.sleep(0.01)
    return time.monotonic() - started


async def health_statuses(channel: grpc.aio.Channel) -> tuple[int, ...]:
    """The health status of ``""`` and the StageConfigService, as a client sees them."""
    stub = health_pb2_grpc.HealthStub(channel)
    answers = [
        await stub.Check(health_pb2.HealthCheckRequest(service=name), timeout=5)
        for name in HEALTH_SERVICES
    ]
    return tuple(a.status for a in answers)


async def wait_for_health(channel: grpc.aio.Channel, status: int, within: float) -> float:
    """Wait until both health services report ``status``; returns the seconds it took."""
    started = time.monotonic()
    while True:
        seen = await health_statuses(channel)
        if seen == (status, status):
            return time.monotonic() - started
        if time.monotonic() - started > within:
            name = health_pb2.HealthCheckResponse.ServingStatus.Name(status)
            raise AssertionError(f"health not {name} within {within:g} s: {seen}")
        await asyncio.sleep(0.02)


@pytest.fixture(scope="module")
def private_postgres() -> Iterator[PrivatePostgres]:
    """A PostgreSQL cluster of this module's own, which tests may stop and restart."""
    reason = unavailable_reason()
    if reason is not None:
        pytest.skip(reason)
    cluster = PrivatePostgres()
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.destroy()


@pytest.fixture
async def private_pg_url(private_postgres: PrivatePostgres) -> str:
    """A fresh database on the private cluster (running again if a test stopped it)."""
    with contextlib.suppress(RuntimeError):
        private_postgres.start()  # a test that failed mid-outage may have left it down
    return await private_postgres.create_database(f"faults_{uuid.uuid4().hex[:10]}")


@pytest.fixture
def tiny_filesystem(tmp_path: Path) -> Iterator[Path]:
    """A 4 MiB tmpfs: a disk that really fills up. Skipped where mounting is not allowed
    (not root, or a container without CAP_SYS_ADMIN)."""
    mount_point = tmp_path / "tiny-fs"
    mount_point.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=4m,mode=0700", "tmpfs", str(mount_point)],
        capture_output=True,
        text=True,
        check=False,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip() or mounted.returncode}")
    try:
        yield mount_point
    finally:
        # Lazy: the server's files may still be open if the test failed half-way.
        subprocess.run(["umount", "-l", str(mount_point)], check=False)
