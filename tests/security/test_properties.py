"""Property-based tests over every request field of every RPC (hypothesis).

Whatever a caller sends: the answer is never INTERNAL/UNKNOWN (or any status a user
mistake must not produce), and a rejected call changes nothing — the database, the
admin's view and the history are byte-for-byte what they were.

One server serves all examples of a test (the examples share its state on purpose:
later examples run against whatever earlier accepted ones stored).
"""

from __future__ import annotations

import sqlite3
import string
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import grpc
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from stageconfig_contract.v1 import stage_config_pb2 as pb
from stageconfig_contract.v1 import stage_config_pb2_grpc as pbg
from stageconfig_server.app import StageConfigApp
from stageconfig_server.domain import ProviderKind
from tests.fakes.provider_server import DEFAULT_MODELS, FakeProviders
from tests.security.conftest import ADMIN_SECRET, TOKEN_SECRETS, TOKENS, WORKER_SECRET, bearer, seed
from tests.support.servers import start_app

EXPECTED_STATUSES = {
    grpc.StatusCode.OK,
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.NOT_FOUND,
    grpc.StatusCode.ABORTED,
    grpc.StatusCode.FAILED_PRECONDITION,
}
"""What a well-formed request with any field values may get (never INTERNAL, UNKNOWN,
UNAVAILABLE, DEADLINE_EXCEEDED…)."""

PROPERTY_SETTINGS = settings(
    max_examples=50,
    deadline=None,
    database=None,  # the checkout is shared: no .hypothesis/ directory in it
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

INT64 = st.one_of(st.integers(-3, 40), st.integers(-(2**63), 2**63 - 1))
INT32 = st.one_of(st.integers(-3, 300), st.integers(-(2**31), 2**31 - 1))
STAGE = st.one_of(st.integers(0, 5), st.integers(-(2**31), 2**31 - 1))
PROVIDER = st.one_of(st.integers(0, 7), st.integers(-(2**31), 2**31 - 1))
TEXT = st.one_of(
    st.text(max_size=30),
    st.text(alphabet=string.printable, min_size=1, max_size=30),
    st.text(min_size=250, max_size=300),
    st.sampled_from(["", " ", "\n", "\x00", "x" * 4097, "é" * 2049, "a b", "%%", "-1"]),
)
KEY = st.text(alphabet=string.ascii_letters + string.digits + "-_:", min_size=1, max_size=60)
MODEL = st.one_of(TEXT, st.sampled_from([m for models in DEFAULT_MODELS.values() for m in models]))
VALID_PAIRS = [
    (pb.STAGE_TYPE_POEM, pb.PROVIDER_KIND_GEMINI),
    (pb.STAGE_TYPE_POEM, pb.PROVIDER_KIND_OPENAI),
    (pb.STAGE_TYPE_POEM, pb.PROVIDER_KIND_YANDEX_GPT),
    (pb.STAGE_TYPE_VOICE, pb.PROVIDER_KIND_SPEECHKIT),
    (pb.STAGE_TYPE_SONG, pb.PROVIDER_KIND_SUNO),
    (pb.STAGE_TYPE_CLIP, pb.PROVIDER_KIND_PIKA),
]
OPTIONS = st.dictionaries(
    st.one_of(st.sampled_from(["folder_id", "voice", "region"]), st.text(max_size=8)),
    st.one_of(st.sampled_from(["b1gfolder0123", "b1g-bad!", ""]), TEXT),
    max_size=3,
)


def _fingerprint(db_path: Path) -> list[Any]:
    with sqlite3.connect(f"file:{db_path}?mode=ro", uri=True) as conn:
        return [
            conn.execute(f"SELECT * FROM {table} ORDER BY 1").fetchall()
            for table in ("provider_configs", "api_keys", "revision_log", "service_state")
        ]


class Harness:
    """A server, a stub and the 'nothing changed' check."""

    def __init__(self, app: StageConfigApp, stub: pbg.StageConfigServiceStub, db_path: Path):
        self.app = app
        self.stub = stub
        self.db_path = db_path

    async def state(self) -> tuple[list[Any], bytes]:
        """The database rows, and what an admin sees (configs + full history)."""
        configs = await self.stub.ListConfigs(
            pb.ListConfigsRequest(), metadata=bearer(ADMIN_SECRET)
        )
        history = await self.stub.GetConfigHistory(
            pb.GetConfigHistoryRequest(page_size=1000), metadata=bearer(ADMIN_SECRET)
        )
        view = configs.SerializeToString(deterministic=True) + history.SerializeToString(
            deterministic=True
        )
        return _fingerprint(self.db_path), view

    async def check(self, call: Callable[[], Awaitable[Any]]) -> grpc.StatusCode:
        """Make the call; assert an expected status and no change when it was refused."""
        before = await self.state()
        code, details = grpc.StatusCode.OK, ""
        try:
            await call()
        except grpc.aio.AioRpcError as error:
            code, details = error.code(), error.details() or ""
        assert code in EXPECTED_STATUSES, f"{code.name}: {details}"
        if code is not grpc.StatusCode.OK:
            assert await self.state() == before, f"a refused call ({code.name}) changed state"
        return code


@pytest.fixture
async def harness(db_path: Path, fake_providers: FakeProviders) -> AsyncIterator[Harness]:
    """A seeded secured server shared by every example of one test."""
    app = await start_app(db_path, fake_providers, STAGECONFIG_TOKENS=TOKENS)
    try:
        async with grpc.aio.insecure_channel(app.target) as channel:
            stub = pbg.StageConfigServiceStub(channel)
            await seed(stub)
            yield Harness(app, stub, db_path)
    finally:
        await app.stop(grace=1)


ADMIN = bearer(ADMIN_SECRET)
WORKER = bearer(WORKER_SECRET)


@st.composite
def update_requests(draw: st.DrawFn) -> pb.UpdateConfigRequest:
    """A valid UpdateConfig request with up to three of its fields replaced by anything."""
    stage, provider = draw(st.sampled_from(VALID_PAIRS))
    kind = ProviderKind(pb.ProviderKind.Name(provider).removeprefix("PROVIDER_KIND_"))
    valid: dict[str, Any] = {
        "api_key": draw(st.none() | KEY),
        "model": draw(st.none() | st.sampled_from(DEFAULT_MODELS.get(kind, ("",)))) or None,
        "options": {"folder_id": "b1gfolder0123"} if kind is ProviderKind.YANDEX_GPT else {},
        "expected_revision": None,
        "validate_only": draw(st.booleans()),
        "comment": "",
    }
    anything: dict[str, st.SearchStrategy[Any]] = {
        "api_key": st.none() | TEXT,
        "model": st.none() | MODEL,
        "options": OPTIONS,
        "expected_revision": st.none() | INT64,
        "validate_only": st.booleans(),
        "comment": TEXT,
    }
    fuzzed = draw(st.sets(st.sampled_from(["stage_type", "provider_kind", *anything]), max_size=3))
    fields = {
        name: draw(anything[name]) if name in fuzzed else value for name, value in valid.items()
    }
    request = pb.UpdateConfigRequest(
        stage_type=draw(STAGE) if "stage_type" in fuzzed else stage,
        provider_kind=draw(PROVIDER) if "provider_kind" in fuzzed else provider,
        options=fields["options"],
        validate_only=fields["validate_only"],
        comment=fields["comment"],
    )
    for optional in ("api_key", "model", "expected_revision"):
        if fields[optional] is not None:
            setattr(request, optional, fields[optional])
    return request


@PROPERTY_SETTINGS
@given(request=update_requests())
async def test_update_config(harness: Harness, request: pb.UpdateConfigRequest) -> None:
    before = await harness.state()
    code = await harness.check(
        lambda: harness.stub.UpdateConfig(request, metadata=ADMIN, timeout=10)
    )
    event(code.name)
    if request.validate_only:
        assert await harness.state() == before, "validate_only wrote something"


@PROPERTY_SETTINGS
@given(stage=STAGE)
async def test_get_active_config(harness: Harness, stage: int) -> None:
    request = pb.GetActiveConfigRequest(stage_type=stage)  # type: ignore[arg-type]
    await harness.check(lambda: harness.stub.GetActiveConfig(request, metadata=WORKER, timeout=10))


@PROPERTY_SETTINGS
@given(stage=STAGE, refresh=st.booleans(), as_worker=st.booleans())
async def test_list_models(harness: Harness, stage: int, refresh: bool, as_worker: bool) -> None:
    request = pb.ListModelsRequest(stage_type=stage, refresh=refresh)  # type: ignore[arg-type]
    metadata = WORKER if as_worker else ADMIN
    await harness.check(lambda: harness.stub.ListModels(request, metadata=metadata, timeout=10))


@PROPERTY_SETTINGS
@given(stage=STAGE)
async def test_refresh_models(harness: Harness, stage: int) -> None:
    request = pb.RefreshModelsRequest(stage_type=stage)  # type: ignore[arg-type]
    await harness.check(lambda: harness.stub.RefreshModels(request, metadata=ADMIN, timeout=10))


@PROPERTY_SETTINGS
@given(
    stage=STAGE, page_size=INT32, page_token=st.one_of(TEXT, st.binary(max_size=20).map(bytes.hex))
)
async def test_get_config_history(
    harness: Harness, stage: int, page_size: int, page_token: str
) -> None:
    request = pb.GetConfigHistoryRequest(
        stage_type=stage,  # type: ignore[arg-type]
        page_size=page_size,
        page_token=page_token,
    )
    await harness.check(lambda: harness.stub.GetConfigHistory(request, metadata=ADMIN, timeout=10))


@PROPERTY_SETTINGS
@given(stage=STAGE, to_revision=INT64, expected_revision=st.none() | INT64)
async def test_rollback_config(
    harness: Harness, stage: int, to_revision: int, expected_revision: int | None
) -> None:
    request = pb.RollbackConfigRequest(stage_type=stage, to_revision=to_revision)  # type: ignore[arg-type]
    if expected_revision is not None:
        request.expected_revision = expected_revision
    await harness.check(lambda: harness.stub.RollbackConfig(request, metadata=ADMIN, timeout=10))


@PROPERTY_SETTINGS
@given(
    stages=st.lists(STAGE, max_size=6),
    resume=st.none() | INT64,
    client_id=TEXT,
    as_worker=st.booleans(),
)
async def test_watch_config(
    harness: Harness, stages: list[int], resume: int | None, client_id: str, as_worker: bool
) -> None:
    request = pb.WatchConfigRequest(stage_types=stages, client_id=client_id)  # type: ignore[arg-type]
    if resume is not None:
        request.resume_revision = resume

    async def first_message() -> None:
        call = harness.stub.WatchConfig(
            request, metadata=WORKER if as_worker else ADMIN, timeout=10
        )
        try:
            message = await call.read()
            assert message is not grpc.aio.EOF, "the stream ended without a message"
            # A resume with nothing missed starts with a heartbeat.
            assert message.WhichOneof("event") in ("snapshot", "change", "heartbeat")
        finally:
            call.cancel()

    await harness.check(first_message)


@PROPERTY_SETTINGS
@given(unused=st.none())
async def test_list_configs_and_watchers(harness: Harness, unused: None) -> None:
    # No fields: the property is only that they answer.
    await harness.stub.ListConfigs(pb.ListConfigsRequest(), metadata=ADMIN, timeout=10)
    await harness.stub.ListWatchers(pb.ListWatchersRequest(), metadata=ADMIN, timeout=10)


@PROPERTY_SETTINGS
@given(header=st.text(alphabet=string.printable.strip() + " ", max_size=60))
async def test_any_authorization_header_is_a_token_or_unauthenticated(
    harness: Harness, header: str
) -> None:
    secret = header.strip().partition(" ")[2].strip()
    code = grpc.StatusCode.OK
    try:
        await harness.stub.ListConfigs(
            pb.ListConfigsRequest(), metadata=(("authorization", header),), timeout=10
        )
    except grpc.aio.AioRpcError as error:
        code = error.code()
    if code is grpc.StatusCode.OK:
        assert secret in TOKEN_SECRETS
    else:
        assert code is grpc.StatusCode.UNAUTHENTICATED
