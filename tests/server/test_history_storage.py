"""The revision log stores a model list once per change of the list, not once per row.

A real server (SQLite file) refreshes against the hostile provider's real HTTP server:
status flaps with the same list add rows that reference the stored list; a new list is
stored again; every log entry still reads back with its whole list (what replicas and
resuming watchers use).
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import grpc
import pytest

from stageconfig_contract.v1 import stage_config_pb2 as pb
from stageconfig_contract.v1 import stage_config_pb2_grpc as pbg
from stageconfig_server.app import StageConfigApp
from tests.fakes.hostile_provider import GOOD_MODELS, HostileProvider
from tests.support.servers import start_app

KEY = "sk-history-0123456789abcdef"


@pytest.fixture(scope="module")
def hostile() -> Iterator[HostileProvider]:
    with HostileProvider() as server:
        yield server


@pytest.fixture
async def app(db_path: Path, hostile: HostileProvider) -> AsyncIterator[StageConfigApp]:
    hostile.behave("ok")
    started = await start_app(db_path, None, **hostile.env())
    try:
        yield started
    finally:
        await started.stop(grace=1)


def _states(db_path: Path) -> list[tuple[int, dict[str, object]]]:
    with sqlite3.connect(db_path) as conn:
        rows = conn.execute("SELECT revision, state FROM revision_log ORDER BY revision").fetchall()
    return [(revision, json.loads(state)) for revision, state in rows]


async def test_a_flapping_status_does_not_copy_the_list_into_every_row(
    app: StageConfigApp, hostile: HostileProvider, db_path: Path
) -> None:
    async with grpc.aio.insecure_channel(app.target) as channel:
        stub = pbg.StageConfigServiceStub(channel)
        await stub.UpdateConfig(
            pb.UpdateConfigRequest(
                stage_type=pb.STAGE_TYPE_POEM,
                provider_kind=pb.PROVIDER_KIND_OPENAI,
                api_key=KEY,
                model="gpt-4o",
            )
        )
        for _ in range(4):  # ERROR, then ACTIVE again: a new revision each time
            hostile.behave("huge_body")
            await stub.RefreshModels(pb.RefreshModelsRequest())
            hostile.behave("ok")
            await stub.RefreshModels(pb.RefreshModelsRequest())
        hostile.behave("models", models=["gpt-5", "gpt-4o"])
        await stub.RefreshModels(pb.RefreshModelsRequest())
    states = _states(db_path)
    assert len(states) == 10
    inline = [revision for revision, state in states if "models_cache" in state]
    assert inline == [states[0][0], states[-1][0]]
    assert all(state["models_cache_at"] == states[0][0] for _, state in states[1:-1])
    # Read back (what a replica catching up and a resuming watcher get): whole lists.
    entries = await app.service.repository.log_since(0)
    # (OpenAI lists newest first, then by id: both are "created" 1 here.)
    assert [list(e.state.models_cache) for e in entries] == [list(GOOD_MODELS)] * 9 + [
        ["gpt-4o", "gpt-5"]
    ]
    single = await app.service.repository.log_entry(states[4][0])
    assert single is not None
    assert list(single.state.models_cache) == list(GOOD_MODELS)
