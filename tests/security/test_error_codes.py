"""The caller's key and the server's secret never share a code, on a real server.

- the provider rejects the key an admin sends → FAILED_PRECONDITION with
  ``ErrorInfo(reason="KEY_REJECTED_AUTH")``: the client raises ``KeyRejectedError``;
- the server's ``ADMIN_SECRET_KEY`` cannot decrypt a key it stored (here: a rollback to
  a revision whose key row was written under another secret) → INTERNAL with
  ``ErrorInfo(reason="SECRET_MISMATCH")``: the client raises ``SecretMismatchError``.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from stageconfig.admin import AdminClient
from stageconfig.errors import KeyRejectedError, SecretMismatchError, StatusCode
from stageconfig_contract.v1 import stage_config_pb2 as pb
from stageconfig_contract.v1 import stage_config_pb2_grpc as pbg
from stageconfig_server.app import StageConfigApp
from stageconfig_server.crypto import KeyCipher, fingerprint
from tests.fakes.provider_server import FakeProviders

OLD_KEY = "AIza-error-codes-old-000000000001"
NEW_KEY = "AIza-error-codes-new-000000000002"
REJECTED_KEY = "AIza-error-codes-rejected-000003"
OTHER_SECRET = "a-secret-this-server-was-never-given-0123456789"


@pytest.fixture
def admin(app: StageConfigApp) -> Iterator[AdminClient]:
    with AdminClient(app.target, timeout=10) as client:
        yield client


def _error_reason(error: grpc.aio.AioRpcError) -> str:
    status = rpc_status.from_call(error)  # type: ignore[arg-type]
    assert status is not None
    for detail in status.details:
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            assert info.domain == "stageconfig"
            return str(info.reason)
    return ""


async def test_a_rejected_key_is_failed_precondition_and_key_rejected_error(
    app: StageConfigApp, admin: AdminClient, fake_providers: FakeProviders
) -> None:
    fake_providers.reject_key(REJECTED_KEY)
    async with grpc.aio.insecure_channel(app.target) as channel:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await pbg.StageConfigServiceStub(channel).UpdateConfig(
                pb.UpdateConfigRequest(
                    stage_type=pb.STAGE_TYPE_POEM,
                    provider_kind=pb.PROVIDER_KIND_GEMINI,
                    api_key=REJECTED_KEY,
                )
            )
    assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert _error_reason(caught.value) == "KEY_REJECTED_AUTH"

    with pytest.raises(KeyRejectedError) as rejected:
        await asyncio.to_thread(admin.update_config, "POEM", "GEMINI", api_key=REJECTED_KEY)
    assert not isinstance(rejected.value, SecretMismatchError)
    assert rejected.value.code is StatusCode.FAILED_PRECONDITION
    assert REJECTED_KEY not in str(rejected.value)


def _encrypt_stored_key_under_another_secret(db_path: Path, api_key: str) -> None:
    """What a replica with another ADMIN_SECRET_KEY (or a restored backup) leaves behind."""
    foreign = KeyCipher(OTHER_SECRET).encrypt_key(api_key)
    with sqlite3.connect(db_path, timeout=10) as connection:
        changed = connection.execute(
            "UPDATE api_keys SET api_key_encrypted = ? WHERE fingerprint = ?",
            (foreign, fingerprint(api_key)),
        ).rowcount
    assert changed == 1


async def test_a_secret_mismatch_is_internal_and_secret_mismatch_error(
    app: StageConfigApp, admin: AdminClient, db_path: Path
) -> None:
    first = await asyncio.to_thread(admin.update_config, "POEM", "GEMINI", api_key=OLD_KEY)
    await asyncio.to_thread(admin.update_config, "POEM", "GEMINI", api_key=NEW_KEY)
    _encrypt_stored_key_under_another_secret(db_path, OLD_KEY)

    async with grpc.aio.insecure_channel(app.target) as channel:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await pbg.StageConfigServiceStub(channel).RollbackConfig(
                pb.RollbackConfigRequest(
                    stage_type=pb.STAGE_TYPE_POEM, to_revision=first.config.revision
                )
            )
    assert caught.value.code() == grpc.StatusCode.INTERNAL
    assert _error_reason(caught.value) == "SECRET_MISMATCH"
    details = caught.value.details() or ""
    assert "ADMIN_SECRET_KEY" in details  # the operator learns what to fix
    assert OTHER_SECRET not in details
    assert OLD_KEY not in details

    with pytest.raises(SecretMismatchError) as mismatch:
        await asyncio.to_thread(admin.rollback, "POEM", first.config.revision)
    assert not isinstance(mismatch.value, KeyRejectedError)
    assert mismatch.value.code is StatusCode.INTERNAL
    # Nothing changed: the stage still serves the newest key.
    overview = await asyncio.to_thread(admin.list_configs)
    assert overview.head_revision == first.config.revision + 1
