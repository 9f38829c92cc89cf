"""The leak hunt: recognisable keys go in, every RPC (failing ones too) and the model sync
against failing providers run with DEBUG logging, and then every place a key could end
up is searched. A plaintext key may appear in worker responses and nowhere else."""

from __future__ import annotations

import json
import logging
import sqlite3
from collections.abc import AsyncIterator, Awaitable
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
from google.protobuf import text_format
from google.protobuf.message import Message
from pytest_httpserver import HTTPServer

from stageconfig_contract.v1 import stage_config_pb2 as pb
from stageconfig_contract.v1 import stage_config_pb2_grpc as pbg
from stageconfig_server.app import StageConfigApp
from stageconfig_server.domain import ProviderKind
from tests.fakes.provider_server import SUPPORTED_FAILURES, FakeProviders
from tests.security.conftest import (
    ADMIN_SECRET,
    STAGES,
    TOKEN_SECRETS,
    TOKENS,
    UNKNOWN_SECRET,
    WORKER_SECRET,
    bearer,
    seed,
)
from tests.support.servers import TEST_SECRET, start_app

POEM = pb.STAGE_TYPE_POEM
ADMIN = bearer(ADMIN_SECRET)
WORKER = bearer(WORKER_SECRET)

# Keys that only ever travel inside failing or validate-only calls, or get replaced.
REJECTED_KEY = "AIzaLEAKREJECTED-3f9a1c7e5b2d"
CONTROL_KEY = "AIzaLEAKCONTROL-\x07-8e2b4d6f"
HUGE_KEY = "AIzaLEAKHUGE-" + "x" * 5000
WRONG_STAGE_KEY = "AIzaLEAKWRONGSTAGE-1c3e5a7b"
BAD_MODEL_KEY = "AIzaLEAKBADMODEL-9d7b5f3a"
STALE_KEY = "AIzaLEAKSTALE-2e4c6a8b0d"
PREVIEW_KEY = "AIzaLEAKPREVIEW-7a5c3e1b9f"


class Evidence:
    """Everything observable, sorted into where a plaintext key may and may not be."""

    def __init__(self) -> None:
        self.forbidden: dict[str, list[str]] = {}
        self.worker: list[str] = []

    def add(self, where: str, text: str | bytes) -> None:
        if isinstance(text, bytes):
            text = text.decode("utf-8", "backslashreplace")
        self.forbidden.setdefault(where, []).append(text)

    def response(self, message: Message, *, worker: bool) -> None:
        text = text_format.MessageToString(message, as_utf8=True)
        raw = message.SerializeToString()
        if worker:
            self.worker += [text, raw.decode("utf-8", "backslashreplace")]
        else:
            self.add("admin response", text)
            self.add("admin response (wire)", raw)

    def error(self, error: grpc.aio.AioRpcError) -> None:
        self.add("error message", error.details() or "")
        self.add("error debug string", error.debug_error_string() or "")
        for key, value in error.trailing_metadata() or ():
            self.add(f"error trailer {key}", value)

    async def call(self, awaitable: Awaitable[Any], *, worker: bool = False) -> Any:
        """Await a unary call, filing its answer or its error."""
        try:
            reply = await awaitable
        except grpc.aio.AioRpcError as error:
            self.error(error)
            return error.code()
        self.response(reply, worker=worker)
        return reply

    async def watch(
        self, stub: pbg.StageConfigServiceStub, metadata: Any, count: int, **request: Any
    ) -> None:
        """Read ``count`` messages of a WatchConfig stream (or its error)."""
        call = stub.WatchConfig(pb.WatchConfigRequest(**request), metadata=metadata, timeout=10)
        try:
            for _ in range(count):
                message = await call.read()
                if message is grpc.aio.EOF:
                    break
                self.response(message, worker=metadata == WORKER)
        except grpc.aio.AioRpcError as error:
            self.error(error)
        finally:
            call.cancel()


def _every_key() -> list[str]:
    keys = [case.key for case in STAGES]
    keys += [REJECTED_KEY, CONTROL_KEY, HUGE_KEY, WRONG_STAGE_KEY, BAD_MODEL_KEY]
    keys += [STALE_KEY, PREVIEW_KEY]
    keys += [_key(kind, failure) for kind, failure in _failing_updates()]
    return keys


def _key(kind: ProviderKind, failure: str) -> str:
    prefix = "sk-" if kind is ProviderKind.OPENAI else "AQVN"
    return f"{prefix}LEAK{kind.value}-{failure}-5c1e9a"


def _failing_updates() -> list[tuple[ProviderKind, str]]:
    return [
        (kind, failure)
        for kind in (ProviderKind.OPENAI, ProviderKind.YANDEX_GPT)
        for failure in sorted(SUPPORTED_FAILURES[kind])
    ]


@pytest.fixture
async def hunted_app(
    db_path: Path, fake_providers: FakeProviders, httpserver: HTTPServer
) -> AsyncIterator[StageConfigApp]:
    """A server with tokens, a 1 s provider bound (for "hang"), an admin webhook and
    the metrics endpoint."""
    httpserver.expect_request("/admin-events", method="POST").respond_with_data("ok")
    app = await start_app(
        db_path,
        fake_providers,
        STAGECONFIG_TOKENS=TOKENS,
        STAGECONFIG_PROVIDER_TIMEOUT_SECONDS="1",
        STAGECONFIG_ADMIN_WEBHOOK_URL=httpserver.url_for("/admin-events"),
        STAGECONFIG_METRICS_ADDRESS="127.0.0.1:0",
    )
    try:
        yield app
    finally:
        await app.stop(grace=1)


async def test_plaintext_keys_appear_only_in_worker_responses(
    hunted_app: StageConfigApp,
    fake_providers: FakeProviders,
    httpserver: HTTPServer,
    db_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    found = Evidence()
    async with grpc.aio.insecure_channel(hunted_app.target) as channel:
        stub = pbg.StageConfigServiceStub(channel)
        await seed(stub)
        await _drive_every_rpc(stub, found, fake_providers)
        await _sync_against_failing_providers(stub, found, fake_providers, hunted_app)
        # Positive control: what workers finally get holds every current key.
        for case in STAGES[1:]:
            reply = await found.call(
                stub.GetActiveConfig(
                    pb.GetActiveConfigRequest(stage_type=case.stage), metadata=WORKER
                ),
                worker=True,
            )
            assert reply.config.api_key == case.key
        await found.watch(stub, WORKER, 1, stage_types=[c.stage for c in STAGES])
        history = await stub.GetConfigHistory(
            pb.GetConfigHistoryRequest(page_size=1000), metadata=ADMIN
        )
        found.response(history, worker=False)

    async with httpx.AsyncClient() as http:
        metrics = await http.get(f"http://127.0.0.1:{hunted_app.metrics.port}/metrics")
    assert "stageconfig_" in metrics.text
    found.add("metrics", metrics.text)
    for record in caplog.records:
        found.add(f"log {record.name}", logging.Formatter().format(record))
    for request, _response in httpserver.log:
        found.add("admin webhook", request.get_data())
    await hunted_app.stop(grace=1)  # checkpoint the WAL: every byte is in files we read
    for path in db_path.parent.glob(db_path.name + "*"):
        found.add(f"raw file {path.name}", path.read_bytes())
    with sqlite3.connect(f"file:{db_path}?mode=ro", uri=True) as conn:
        for table in ("provider_configs", "api_keys", "revision_log", "service_state", "job_runs"):
            found.add(
                f"table {table}",
                json.dumps(conn.execute(f"SELECT * FROM {table}").fetchall(), default=str),
            )

    assert any(r.levelno == logging.DEBUG for r in caplog.records), "DEBUG logging was not captured"
    assert httpserver.log, "the model-replaced webhook never fired"
    secrets = [*_every_key(), *TOKEN_SECRETS, UNKNOWN_SECRET, TEST_SECRET]
    leaks = sorted(
        {
            (where, secret[:24])
            for where, texts in found.forbidden.items()
            for text in texts
            for secret in secrets
            if secret in text
        }
    )
    assert leaks == []
    worker_text = "\n".join(found.worker)
    for case in STAGES:
        assert case.key in worker_text, "the hunt would not see a key even where it belongs"


async def _drive_every_rpc(
    stub: pbg.StageConfigServiceStub, found: Evidence, fake: FakeProviders
) -> None:
    code = grpc.StatusCode
    poem, gemini = STAGES[0], pb.PROVIDER_KIND_GEMINI

    def update(key: str, **fields: Any) -> pb.UpdateConfigRequest:
        fields.setdefault("stage_type", POEM)
        fields.setdefault("provider_kind", gemini)
        return pb.UpdateConfigRequest(api_key=key, **fields)

    # An admin watch open across the failing writes sees its snapshot and a change.
    fake.reject_key(REJECTED_KEY)
    expected = {
        REJECTED_KEY: code.FAILED_PRECONDITION,
        CONTROL_KEY: code.INVALID_ARGUMENT,
        HUGE_KEY: code.INVALID_ARGUMENT,
    }
    for key, status in expected.items():
        assert await found.call(stub.UpdateConfig(update(key), metadata=ADMIN)) == status
    assert (
        await found.call(
            stub.UpdateConfig(
                update(WRONG_STAGE_KEY, stage_type=pb.STAGE_TYPE_VOICE), metadata=ADMIN
            )
        )
        == code.INVALID_ARGUMENT
    )
    assert (
        await found.call(stub.UpdateConfig(update(BAD_MODEL_KEY, model="no-such"), metadata=ADMIN))
        == code.INVALID_ARGUMENT
    )
    assert (
        await found.call(
            stub.UpdateConfig(update(STALE_KEY, expected_revision=12345), metadata=ADMIN)
        )
        == code.ABORTED
    )
    preview = await found.call(
        stub.UpdateConfig(update(PREVIEW_KEY, validate_only=True), metadata=ADMIN)
    )
    assert not preview.written
    # Tokens that may not see keys, asking for them.
    for metadata in (ADMIN, bearer(UNKNOWN_SECRET), ()):
        await found.call(
            stub.GetActiveConfig(pb.GetActiveConfigRequest(stage_type=POEM), metadata=metadata)
        )
    await found.call(
        stub.GetActiveConfig(pb.GetActiveConfigRequest(stage_type=POEM), metadata=WORKER),
        worker=True,
    )
    await found.call(stub.ListModels(pb.ListModelsRequest(stage_type=POEM), metadata=ADMIN))
    await found.call(stub.ListModels(pb.ListModelsRequest(stage_type=POEM), metadata=WORKER))
    await found.call(stub.ListConfigs(pb.ListConfigsRequest(), metadata=ADMIN))
    await found.call(stub.ListConfigs(pb.ListConfigsRequest(), metadata=WORKER))
    await found.call(
        stub.GetConfigHistory(pb.GetConfigHistoryRequest(page_token="%%"), metadata=ADMIN)
    )
    await found.call(
        stub.RollbackConfig(
            pb.RollbackConfigRequest(stage_type=POEM, to_revision=999), metadata=ADMIN
        )
    )
    # Revision 2 belongs to VOICE, not POEM.
    await found.call(
        stub.RollbackConfig(
            pb.RollbackConfigRequest(stage_type=POEM, to_revision=2), metadata=ADMIN
        )
    )
    await found.call(
        stub.RollbackConfig(
            pb.RollbackConfigRequest(stage_type=POEM, to_revision=1), metadata=ADMIN
        )
    )
    await found.watch(stub, ADMIN, 1, stage_types=[c.stage for c in STAGES])
    await found.watch(stub, ADMIN, 1, stage_types=[99])
    await found.watch(stub, (), 1, stage_types=[POEM])
    call = stub.WatchConfig(
        pb.WatchConfigRequest(stage_types=[POEM], client_id="hunt"), metadata=WORKER
    )
    try:
        found.response(await call.read(), worker=True)
        await found.call(stub.ListWatchers(pb.ListWatchersRequest(), metadata=ADMIN))
    finally:
        call.cancel()
    # Put POEM's recognisable key back for the rest of the hunt.
    await found.call(stub.UpdateConfig(poem.request(), metadata=ADMIN))


async def _sync_against_failing_providers(
    stub: pbg.StageConfigServiceStub,
    found: Evidence,
    fake: FakeProviders,
    app: StageConfigApp,
) -> None:
    # Saving a key while its provider fails: rejected, or stored as ERROR with a reason.
    for kind, failure in _failing_updates():
        fake.set_failure(kind, failure)
        provider = (
            pb.PROVIDER_KIND_OPENAI if kind is ProviderKind.OPENAI else pb.PROVIDER_KIND_YANDEX_GPT
        )
        options = {"folder_id": "b1gfolder0123"} if kind is ProviderKind.YANDEX_GPT else {}
        await found.call(
            stub.UpdateConfig(
                pb.UpdateConfigRequest(
                    stage_type=POEM,
                    provider_kind=provider,
                    api_key=_key(kind, failure),
                    model="gpt-4o" if kind is ProviderKind.OPENAI else "yandexgpt/latest",
                    options=options,
                ),
                metadata=ADMIN,
            )
        )
        fake.set_failure(kind, None)
    await found.call(stub.UpdateConfig(STAGES[0].request(), metadata=ADMIN))
    # The sync (RefreshModels and the scheduled job) against every failure each kind knows.
    failures = sorted(set().union(*SUPPORTED_FAILURES.values()))
    for failure in failures:
        for kind, supported in SUPPORTED_FAILURES.items():
            fake.set_failure(kind, failure if failure in supported else None)
        await found.call(stub.RefreshModels(pb.RefreshModelsRequest(), metadata=ADMIN))
        await found.call(
            stub.ListModels(pb.ListModelsRequest(stage_type=POEM, refresh=True), metadata=ADMIN)
        )
    for kind in ProviderKind:
        fake.set_failure(kind, "server_error" if SUPPORTED_FAILURES[kind] else None)
    await app.sync.run_once()
    for kind in ProviderKind:
        fake.set_failure(kind, None)
    # A model that disappears: WARNING, a history row, a log line and the webhook.
    fake.set_models(ProviderKind.GEMINI, ["gemini-3.0-ultra"])
    await found.call(stub.RefreshModels(pb.RefreshModelsRequest(stage_type=POEM), metadata=ADMIN))
