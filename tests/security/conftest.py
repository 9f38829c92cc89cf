"""Tokens, seeded configs and helpers shared by the security tests."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest

from stageconfig_contract.v1 import stage_config_pb2 as pb
from stageconfig_contract.v1 import stage_config_pb2_grpc as pbg
from stageconfig_server.app import StageConfigApp
from tests.fakes.provider_server import FakeProviders
from tests.support.servers import start_app

ADMIN_SECRET = "adm-7f3c9e1b5d2a48f6a0c4e8b1d3f5a7c9"
WORKER_SECRET = "wrk-2b8d4f6a1c3e5079b2d4f6a8c0e1f3a5"
BOTH_SECRET = "bth-9a1c3e5b7d2f40628a4c6e8b0d1f3a5c"
UNKNOWN_SECRET = "zzz-0000000000000000000000000000000"

TOKENS = (
    f"ops:admin:{ADMIN_SECRET},"
    f"celery:worker:{WORKER_SECRET},"
    f"oncall:admin:{BOTH_SECRET},"
    f"oncall:worker:{BOTH_SECRET}"
)
"""STAGECONFIG_TOKENS of the secured servers: an admin, a worker, a name with both roles."""

TOKEN_SECRETS = (ADMIN_SECRET, WORKER_SECRET, BOTH_SECRET)


@dataclass(frozen=True)
class StageCase:
    """One stage's config, with a key recognisable in any text it leaks into."""

    stage: pb.StageType.ValueType
    provider: pb.ProviderKind.ValueType
    key: str
    model: str | None

    def request(self) -> pb.UpdateConfigRequest:
        """The UpdateConfig request that stores this case."""
        request = pb.UpdateConfigRequest(
            stage_type=self.stage, provider_kind=self.provider, api_key=self.key
        )
        if self.model is not None:
            request.model = self.model
        return request


STAGES = (
    StageCase(
        pb.STAGE_TYPE_POEM,
        pb.PROVIDER_KIND_GEMINI,
        "AIzaSyLEAKPOEM7q2w9e4r1t6y3u8i5o0",
        "gemini-2.5-pro",
    ),
    StageCase(
        pb.STAGE_TYPE_VOICE,
        pb.PROVIDER_KIND_SPEECHKIT,
        "AQVNLEAKVOICE4k8j2h6g1f9d3s7a5",
        "jane:good",
    ),
    StageCase(pb.STAGE_TYPE_SONG, pb.PROVIDER_KIND_SUNO, "sunoLEAKSONG3n7b1v5c9x2z6m4q8w0e", "V5"),
    StageCase(
        pb.STAGE_TYPE_CLIP, pb.PROVIDER_KIND_PIKA, "falLEAKCLIP5e9r3t7y1u4i8o2p6a0s:x9", None
    ),
)
"""A recognisable key for every stage (each contains LEAK, nothing else does)."""


def bearer(secret: str | None) -> tuple[tuple[str, str], ...]:
    """Call metadata carrying ``secret`` as a bearer token (none for None)."""
    return () if secret is None else (("authorization", f"Bearer {secret}"),)


async def seed(stub: pbg.StageConfigServiceStub, admin: str | None = ADMIN_SECRET) -> None:
    """Store every STAGES case (as the admin token when auth is on)."""
    for case in STAGES:
        await stub.UpdateConfig(case.request(), metadata=bearer(admin))


@pytest.fixture
async def secured_app(
    db_path: Path, fake_providers: FakeProviders
) -> AsyncIterator[StageConfigApp]:
    """An in-process server with TOKENS configured (plaintext loopback)."""
    started = await start_app(db_path, fake_providers, STAGECONFIG_TOKENS=TOKENS)
    try:
        yield started
    finally:
        await started.stop(grace=1)


@pytest.fixture
async def secured_stub(secured_app: StageConfigApp) -> AsyncIterator[pbg.StageConfigServiceStub]:
    """A stub (no token of its own: pass ``metadata=bearer(...)``) to ``secured_app``."""
    async with grpc.aio.insecure_channel(secured_app.target) as channel:
        yield pbg.StageConfigServiceStub(channel)
