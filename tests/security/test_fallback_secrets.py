"""Fallback route keys (issue 16) obey the key rules of the primary: plaintext only for
the worker role (GetActiveConfig, WatchConfig snapshot and changes), masked for admins
(UpdateConfig's answer, ListConfigs, WatchConfig, history), and never in a log line."""

from __future__ import annotations

import asyncio
import logging

import pytest

from stageconfig_contract.v1 import stage_config_pb2 as pb
from stageconfig_contract.v1 import stage_config_pb2_grpc as pbg
from tests.security.conftest import ADMIN_SECRET, WORKER_SECRET, bearer
from tests.server.test_fallbacks import (
    ALL_KEYS,
    OPENAI_KEY,
    YANDEX_KEY,
    openai_route,
    poem_request,
    yandex_route,
)

POEM = pb.STAGE_TYPE_POEM


def leaked(message: object) -> list[str]:
    """The test keys that appear in a message's text form."""
    text = str(message)
    return [key for key in ALL_KEYS if key in text]


async def test_workers_get_plaintext_routes_and_admins_masked_ones(
    secured_stub: pbg.StageConfigServiceStub, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    admin, worker = bearer(ADMIN_SECRET), bearer(WORKER_SECRET)
    worker_watch = secured_stub.WatchConfig(
        pb.WatchConfigRequest(stage_types=[POEM]), metadata=worker, timeout=20
    )
    admin_watch = secured_stub.WatchConfig(
        pb.WatchConfigRequest(stage_types=[POEM]), metadata=admin, timeout=20
    )
    try:
        await worker_watch.read()  # the (empty) snapshots: both are registered
        await admin_watch.read()
        answer = await secured_stub.UpdateConfig(
            poem_request(openai_route(), yandex_route()), metadata=admin
        )
        assert not leaked(answer)
        worker_change = await asyncio.wait_for(worker_watch.read(), 10)
        admin_change = await asyncio.wait_for(admin_watch.read(), 10)
    finally:
        worker_watch.cancel()
        admin_watch.cancel()
    assert [r.api_key for r in worker_change.change.config.fallbacks] == [OPENAI_KEY, YANDEX_KEY]
    assert not leaked(admin_change)
    assert all(r.api_key_masked and r.api_key for r in admin_change.change.config.fallbacks)

    active = await secured_stub.GetActiveConfig(
        pb.GetActiveConfigRequest(stage_type=POEM), metadata=worker
    )
    assert [r.api_key for r in active.config.fallbacks] == [OPENAI_KEY, YANDEX_KEY]

    listed = await secured_stub.ListConfigs(pb.ListConfigsRequest(), metadata=admin)
    assert not leaked(listed)
    poem = next(s.config for s in listed.stages if s.stage_type == POEM)
    assert len(poem.fallbacks) == 2

    history = await secured_stub.GetConfigHistory(
        pb.GetConfigHistoryRequest(page_size=10), metadata=admin
    )
    assert not leaked(history)
    fields = {c.field for c in history.entries[0].changes}
    assert {"fallbacks[0].api_key", "fallbacks[1].model"} <= fields

    # A resuming worker replays the change with its route keys; an admin masked.
    worker_resume = secured_stub.WatchConfig(
        pb.WatchConfigRequest(stage_types=[POEM], resume_revision=0), metadata=worker, timeout=20
    )
    try:
        replayed = await worker_resume.read()
    finally:
        worker_resume.cancel()
    configs = list(replayed.snapshot.configs) or [replayed.change.config]
    assert [r.api_key for r in configs[0].fallbacks] == [OPENAI_KEY, YANDEX_KEY]

    assert not [key for key in ALL_KEYS if key in caplog.text]
