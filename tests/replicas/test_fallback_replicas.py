"""Fallback routes across replicas sharing one PostgreSQL database (issue 16): a route
list written on one replica is served, keys in plaintext for workers, by the others
(which learn it from the revision log), and a rollback on another replica restores it."""

from __future__ import annotations

import asyncio
import time

import grpc

from stageconfig_contract.v1 import stage_config_pb2 as pb
from stageconfig_contract.v1 import stage_config_pb2_grpc as pbg
from tests.support.servers import ServerProcess

POOL = ("AQVN-replica-pool-a-0001", "AQVN-replica-pool-b-0002", "AQVN-replica-pool-c-0003")
Stub = pbg.StageConfigServiceStub


def pool_update(*keys: str) -> pb.UpdateConfigRequest:
    return pb.UpdateConfigRequest(
        stage_type=pb.STAGE_TYPE_VOICE,
        provider_kind=pb.PROVIDER_KIND_SPEECHKIT,
        api_key=POOL[0],
        model="jane:good",
        fallbacks=[
            pb.RouteUpdate(provider_kind=pb.PROVIDER_KIND_SPEECHKIT, api_key=k, model="jane:good")
            for k in keys
        ],
    )


async def served_at(stub: Stub, revision: int, deadline_seconds: float = 10) -> pb.StageConfig:
    """VOICE as ``stub``'s replica serves it once it has reached ``revision``."""
    deadline = time.monotonic() + deadline_seconds
    while True:
        answer = await stub.GetActiveConfig(
            pb.GetActiveConfigRequest(stage_type=pb.STAGE_TYPE_VOICE)
        )
        if answer.config.revision >= revision:
            return answer.config
        if time.monotonic() > deadline:
            raise AssertionError(f"the replica never reached revision {revision}")
        await asyncio.sleep(0.02)


async def test_a_key_pool_written_on_one_replica_is_served_and_rolled_back_on_another(
    replicas: list[ServerProcess],
) -> None:
    a, b, _ = replicas
    async with (
        grpc.aio.insecure_channel(a.target) as to_a,
        grpc.aio.insecure_channel(b.target) as to_b,
    ):
        stub_a, stub_b = Stub(to_a), Stub(to_b)
        first = (await stub_a.UpdateConfig(pool_update(*POOL[1:]))).config.revision
        second = (await stub_a.UpdateConfig(pool_update(POOL[2]))).config.revision
        on_b = await served_at(stub_b, second)
        assert [r.api_key for r in on_b.fallbacks] == [POOL[2]]

        rolled = await stub_b.RollbackConfig(
            pb.RollbackConfigRequest(stage_type=pb.STAGE_TYPE_VOICE, to_revision=first)
        )
        assert [r.api_key_masked for r in rolled.config.fallbacks] == [True, True]
        on_a = await served_at(stub_a, rolled.config.revision)
        assert [r.api_key for r in on_a.fallbacks] == list(POOL[1:])
