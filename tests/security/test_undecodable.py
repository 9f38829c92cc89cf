"""Bytes that are not a valid request: INVALID_ARGUMENT naming the field, logged once at
INFO without a traceback — never UNKNOWN or INTERNAL (issue 19, item 4).

Calls are made with raw bytes (no serializer) to a real server on port 0, with a token
that holds both roles, so every method reaches its deserializer. The fuzz test sends
random bytes and mutated valid requests to every RPC of the contract.
"""

from __future__ import annotations

import base64
import logging
from collections.abc import AsyncIterator

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from stageconfig_contract.v1 import stage_config_pb2 as pb
from stageconfig_server.app import StageConfigApp
from stageconfig_server.rpc.server import SERVICE_NAME
from tests.security.conftest import ADMIN_SECRET, BOTH_SECRET, bearer

METHODS = pb.DESCRIPTOR.services_by_name["StageConfigService"].methods
BOTH = bearer(BOTH_SECRET)
FORBIDDEN = {grpc.StatusCode.UNKNOWN, grpc.StatusCode.INTERNAL}


async def raw_call(
    channel: grpc.aio.Channel, method: str, request: bytes, metadata: object = BOTH
) -> tuple[grpc.StatusCode, grpc.aio.AioRpcError | None]:
    """Send ``request`` as is; the status it ends with (a stream: after its first message)."""
    path = f"/{SERVICE_NAME}/{method}"
    descriptor = pb.DESCRIPTOR.services_by_name["StageConfigService"].methods_by_name[method]
    try:
        if descriptor.server_streaming:
            call = channel.unary_stream(path)(request, metadata=metadata, timeout=10)
            try:
                await call.read()
            finally:
                call.cancel()
            code = await call.code()
            if code is grpc.StatusCode.CANCELLED:
                return grpc.StatusCode.OK, None  # it streamed: we hung up
            return code, None
        await channel.unary_unary(path)(request, metadata=metadata, timeout=10)
    except grpc.aio.AioRpcError as error:
        return error.code(), error
    return grpc.StatusCode.OK, None


def field_of(error: grpc.aio.AioRpcError) -> str:
    """The field named by the BadRequest detail of an INVALID_ARGUMENT."""
    status = rpc_status.from_call(error)  # type: ignore[arg-type]
    assert status is not None
    for detail in status.details:
        bad = error_details_pb2.BadRequest()
        if detail.Unpack(bad):
            return bad.field_violations[0].field
    raise AssertionError("no BadRequest detail")


@pytest.fixture
async def channel(secured_app: StageConfigApp) -> AsyncIterator[grpc.aio.Channel]:
    """A plain channel to the secured server (raw bytes in and out)."""
    async with grpc.aio.insecure_channel(secured_app.target) as opened:
        yield opened


def _tag(number: int, wire_type: int) -> bytes:
    return _varint(number << 3 | wire_type)


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _length_delimited(number: int, payload: bytes) -> bytes:
    return _tag(number, 2) + _varint(len(payload)) + payload


INVALID_UTF8 = b"ok\xff\xfe\xc3("


async def test_invalid_utf8_in_a_string_field_names_the_field(
    channel: grpc.aio.Channel, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    client_id = pb.WatchConfigRequest.DESCRIPTOR.fields_by_name["client_id"].number
    code, error = await raw_call(channel, "WatchConfig", _length_delimited(client_id, INVALID_UTF8))
    assert code is grpc.StatusCode.INVALID_ARGUMENT
    assert error is not None
    assert field_of(error) == "client_id"
    comment = pb.UpdateConfigRequest.DESCRIPTOR.fields_by_name["comment"].number
    valid = pb.UpdateConfigRequest(
        stage_type=pb.STAGE_TYPE_VOICE, provider_kind=pb.PROVIDER_KIND_SPEECHKIT, api_key="k"
    ).SerializeToString()
    code, error = await raw_call(
        channel,
        "UpdateConfig",
        valid + _length_delimited(comment, INVALID_UTF8),
        bearer(ADMIN_SECRET),
    )
    assert code is grpc.StatusCode.INVALID_ARGUMENT
    assert error is not None
    assert field_of(error) == "comment"
    assert "UpdateConfigRequest" in (error.details() or "")
    refusals = [r for r in caplog.records if "is not a valid" in r.getMessage()]
    assert refusals
    assert all(r.levelno == logging.INFO for r in refusals)
    assert all(r.exc_info is None for r in caplog.records)
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


async def test_corrupt_wire_format_and_deep_nesting_are_invalid_argument(
    channel: grpc.aio.Channel,
) -> None:
    depth = 200
    cases = {
        "truncated length": _tag(1, 2) + _varint(50) + b"short",
        "overlong varint": _tag(1, 0) + b"\xff" * 11,
        "wire type 7": bytes([1 << 3 | 7]),
        "groups nested deeper than protobuf allows": _tag(1000, 3) * depth + _tag(1000, 4) * depth,
        "end group without a start": _tag(5, 4),
    }
    for name, data in cases.items():
        for method in METHODS:
            code, _ = await raw_call(channel, method.name, data)
            assert code is grpc.StatusCode.INVALID_ARGUMENT, f"{name} → {method.name}: {code}"


async def test_a_huge_unknown_field_is_ignored_not_an_error(channel: grpc.aio.Channel) -> None:
    # Unknown fields are how a newer client talks to this server: they must parse.
    request = pb.ListConfigsRequest().SerializeToString() + _length_delimited(999, b"x" * 1_000_000)
    code, _ = await raw_call(channel, "ListConfigs", request, bearer(ADMIN_SECRET))
    assert code is grpc.StatusCode.OK


def _page_token(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


@pytest.mark.parametrize(
    "token",
    [
        _page_token(f"before:{2**63}"),
        _page_token(f"before:{2**64 + 5}"),
        _page_token("before:" + "9" * 400),
        _page_token("before:0"),
        _page_token("before:\u0663"),  # an Arabic-Indic digit: int() would take it
        _page_token("before:1_000"),
        "x" * 10_000,
    ],
)
async def test_a_page_token_whose_number_does_not_fit_is_invalid_argument(
    channel: grpc.aio.Channel, token: str
) -> None:
    request = pb.GetConfigHistoryRequest(page_token=token).SerializeToString()
    code, error = await raw_call(channel, "GetConfigHistory", request, bearer(ADMIN_SECRET))
    assert code is grpc.StatusCode.INVALID_ARGUMENT
    assert error is not None
    assert field_of(error) == "page_token"


async def test_the_largest_revision_is_still_a_valid_page_token(channel: grpc.aio.Channel) -> None:
    request = pb.GetConfigHistoryRequest(page_token=_page_token(f"before:{2**63 - 1}"))
    code, _ = await raw_call(
        channel, "GetConfigHistory", request.SerializeToString(), bearer(ADMIN_SECRET)
    )
    assert code is grpc.StatusCode.OK


@pytest.mark.parametrize(
    ("client_id", "accepted"),
    [
        ("w" * 128, True),
        ("worker-1/42 é 工", True),
        ("w" * 129, False),
        ("evil\x1b]0;pwned\x07", False),
        ("rtl\u202eexe.txt", False),
        ("two\nlines", False),
        ("nul\x00", False),
        ("del\x7f", False),
        ("c1\x9b31m", False),
    ],
)
async def test_client_id_is_at_most_128_printable_characters(
    channel: grpc.aio.Channel, client_id: str, accepted: bool
) -> None:
    request = pb.WatchConfigRequest(client_id=client_id).SerializeToString()
    code, error = await raw_call(channel, "WatchConfig", request)
    if accepted:
        assert code is grpc.StatusCode.OK
    else:
        assert code is grpc.StatusCode.INVALID_ARGUMENT
        assert error is not None
        assert field_of(error) == "client_id"


def _valid_requests() -> dict[str, list[bytes]]:
    """A few well-formed requests per method, for the fuzzer to mutate."""
    voice = pb.STAGE_TYPE_VOICE
    examples: dict[str, list[object]] = {
        "GetActiveConfig": [pb.GetActiveConfigRequest(stage_type=voice)],
        "WatchConfig": [pb.WatchConfigRequest(stage_types=[voice], client_id="w-1")],
        "ListModels": [pb.ListModelsRequest(stage_type=voice)],
        "UpdateConfig": [
            pb.UpdateConfigRequest(
                stage_type=voice,
                provider_kind=pb.PROVIDER_KIND_SPEECHKIT,
                api_key="fuzz-key",
                model="alena",
                validate_only=True,
                comment="fuzz",
            )
        ],
        "GetConfigHistory": [
            pb.GetConfigHistoryRequest(page_size=5, page_token=_page_token("before:3"))
        ],
        "RollbackConfig": [pb.RollbackConfigRequest(stage_type=voice, to_revision=1)],
    }
    valid: dict[str, list[bytes]] = {}
    for method in METHODS:
        messages = examples.get(method.name, [])
        valid[method.name] = [m.SerializeToString() for m in messages] or [b""]  # type: ignore[attr-defined]
    return valid


VALID = _valid_requests()


@st.composite
def hostile_requests(draw: st.DrawFn) -> tuple[str, bytes]:
    """A method and bytes: random, or a valid request cut, flipped, spliced or extended."""
    method = draw(st.sampled_from([m.name for m in METHODS]))
    kind = draw(st.sampled_from(["random", "mutated", "appended"]))
    if kind == "random":
        return method, draw(st.binary(max_size=200))
    data = bytearray(draw(st.sampled_from(VALID[method])))
    if kind == "appended":
        number = draw(st.integers(1, 2**29 - 1))
        wire_type = draw(st.sampled_from([0, 1, 2, 3, 4, 5, 6, 7]))
        tail = _tag(number, wire_type) + draw(st.binary(max_size=40))
        return method, bytes(data) + tail
    for _ in range(draw(st.integers(1, 4))):
        operation = draw(st.sampled_from(["flip", "cut", "insert", "delete"]))
        position = draw(st.integers(0, len(data)))
        if operation == "flip" and position < len(data):
            data[position] ^= draw(st.integers(1, 255))
        elif operation == "cut":
            del data[position:]
        elif operation == "insert":
            data[position:position] = draw(st.binary(min_size=1, max_size=8))
        elif position < len(data):
            del data[position]
    return method, bytes(data)


FUZZ_SETTINGS = settings(
    max_examples=400,
    deadline=None,
    derandomize=True,  # the same examples on every run: it cannot flake
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@FUZZ_SETTINGS
@given(case=hostile_requests())
async def test_fuzzed_request_bytes_never_get_unknown_or_internal(
    channel: grpc.aio.Channel, caplog: pytest.LogCaptureFixture, case: tuple[str, bytes]
) -> None:
    method, data = case
    code, error = await raw_call(channel, method, data)
    event(f"{method} {code.name}")
    details = error.details() if error is not None else ""
    assert code not in FORBIDDEN, f"{method} {data!r} → {code.name}: {details}"
    # Never a traceback for a caller's bytes.
    assert not [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR]
