"""The contract's facts live once: every side's enums and tables agree with the proto,
and the stubs package pulls in neither the server nor the client."""

from __future__ import annotations

import importlib
import subprocess
import sys

import pytest
from google.protobuf.internal.enum_type_wrapper import EnumTypeWrapper

import stageconfig_server.domain as server_domain
from stageconfig import _admin_rollout as admin_rollout
from stageconfig import _types as client_types
from stageconfig_contract import facts
from stageconfig_contract.v1 import stage_config_pb2 as pb


def _server_rollout_state() -> type | None:
    """The server's RolloutState (stageconfig_server.rollout_types), once it has one."""
    try:
        rollout_types = importlib.import_module("stageconfig_server.rollout_types")
    except ImportError:
        return None
    found: type | None = getattr(rollout_types, "RolloutState", None)
    return found


# (proto enum, its value prefix, the client's enum, the server's enum or None)
ENUMS = [
    (pb.StageType, "STAGE_TYPE_", client_types.StageType, server_domain.StageType),
    (pb.ProviderKind, "PROVIDER_KIND_", client_types.ProviderKind, server_domain.ProviderKind),
    (pb.ConfigStatus, "CONFIG_STATUS_", client_types.ConfigStatus, server_domain.ConfigStatus),
    (pb.StatusCause, "STATUS_CAUSE_", client_types.StatusCause, server_domain.StatusCause),
    (pb.ConfigSource, "CONFIG_SOURCE_", client_types.ConfigSource, server_domain.ConfigSource),
    (pb.ChangeReason, "CHANGE_REASON_", client_types.ChangeReason, server_domain.ChangeReason),
    # The server's own enum is checked as soon as the server has one.
    (pb.RolloutState, "ROLLOUT_STATE_", admin_rollout.RolloutState, _server_rollout_state()),
    (pb.BreakerState, "BREAKER_STATE_", client_types.BreakerState, server_domain.BreakerState),
]


def _proto_members(enum: EnumTypeWrapper, prefix: str) -> dict[str, int]:
    return {
        name.removeprefix(prefix): number
        for name, number in enum.items()
        if name != f"{prefix}UNSPECIFIED"
    }


@pytest.mark.parametrize(("proto", "prefix", "client", "server"), ENUMS)
def test_client_enums_carry_every_proto_value_with_its_number(
    proto: EnumTypeWrapper, prefix: str, client: type[client_types.ProtoEnum], server: type
) -> None:
    wanted = _proto_members(proto, prefix)
    listed = {m.value: m.number for m in client if m.value != "UNSPECIFIED"}
    assert listed == wanted, f"{client.__name__} must list exactly the proto's values"
    unspecified = client.from_number(0)
    assert unspecified is None or unspecified.value == "UNSPECIFIED"


@pytest.mark.parametrize(("proto", "prefix", "client", "server"), ENUMS)
def test_server_enums_name_every_proto_value(
    proto: EnumTypeWrapper, prefix: str, client: type, server: type | None
) -> None:
    if server is None:
        pytest.skip(f"the server has no {client.__name__} enum (yet)")
    names = {m.value for m in server} - {"UNSPECIFIED"}
    assert names == set(_proto_members(proto, prefix))


def test_unknown_numbers_are_no_exception() -> None:
    assert client_types.StageType.from_number(99) is None
    assert client_types.ProviderKind.from_number(-1) is None


def test_contract_tables_speak_the_proto_names() -> None:
    stages = set(_proto_members(pb.StageType, "STAGE_TYPE_"))
    providers = set(_proto_members(pb.ProviderKind, "PROVIDER_KIND_"))
    assert set(facts.ALLOWED_PROVIDERS) == stages
    assert set(facts.LEGACY_FALLBACK_ORDER) == stages
    assert {p for ps in facts.ALLOWED_PROVIDERS.values() for p in ps} == providers
    assert set(facts.LEGACY_ENV) == providers
    assert set(facts.PROVIDER_OPTIONS) <= providers
    assert set(facts.PROVIDER_LABELS) == providers
    assert set(facts.STAGE_LABELS) == stages
    for stage, order in facts.LEGACY_FALLBACK_ORDER.items():
        assert set(order) == set(facts.ALLOWED_PROVIDERS[stage])


@pytest.mark.parametrize(
    ("key", "masked"),
    [
        ("", ""),
        ("short", "…rt"),
        ("sk-proj-abcdefgh1234", "sk-…1234"),
        ("AQVNabcdefghijklmn", "…klmn"),
        ("toolong-prefix-123456", "…3456"),
    ],
)
def test_one_mask_rule(key: str, masked: str) -> None:
    assert facts.mask_key(key) == masked
    config = client_types.StageConfig(
        stage_type=client_types.StageType.POEM,
        provider_kind=client_types.ProviderKind.OPENAI,
        api_key=key,
        model="m",
        revision=1,
        status=client_types.ConfigStatus.ACTIVE,
        source=client_types.ConfigSource.DATABASE,
    )
    if len(key) >= 12:
        assert key not in repr(config)
    assert repr(masked) in repr(config)


def _modules_after_import(module: str) -> set[str]:
    code = f"import sys, {module}; print('\\n'.join(sorted(sys.modules)))"
    out = subprocess.run(
        [sys.executable, "-c", code], check=True, capture_output=True, text=True
    ).stdout
    return set(out.split())


def test_server_servicer_imports_no_client_module() -> None:
    loaded = _modules_after_import("stageconfig_server.rpc.servicer")
    client_modules = {m for m in loaded if m == "stageconfig" or m.startswith("stageconfig.")}
    assert client_modules == set(), "the server must build on stageconfig_contract alone"
    assert "stageconfig_contract.v1.stage_config_pb2" in loaded


def test_contract_package_imports_neither_side() -> None:
    loaded = _modules_after_import("stageconfig_contract.v1.stage_config_pb2_grpc")
    assert not {m for m in loaded if m.split(".")[0] in {"stageconfig", "stageconfig_server"}}
