"""Safe defaults at start: token parsing, TLS file checks, and who may listen where."""

from __future__ import annotations

import asyncio
import logging
import os
from pathlib import Path

import grpc
import pytest

from stageconfig_contract.v1 import stage_config_pb2 as pb
from stageconfig_contract.v1 import stage_config_pb2_grpc as pbg
from stageconfig_server.errors import UnsafeConfiguration
from stageconfig_server.rpc.auth import TokenTable
from stageconfig_server.rpc.identity import Role
from stageconfig_server.rpc.transport import is_loopback, load_security
from tests.fakes.provider_server import FakeProviders
from tests.security.certs import CertificateAuthority
from tests.security.conftest import ADMIN_SECRET, TOKENS, WORKER_SECRET
from tests.support.servers import ServerProcess, server_env, settings_for, start_app

# --- tokens ------------------------------------------------------------------------------


def test_tokens_from_the_variable_and_the_file_combine(tmp_path: Path) -> None:
    token_file = tmp_path / "tokens"
    token_file.write_text(
        "# stageconfig tokens\n"
        "\n"
        "  deploy:worker:file-secret-0123456789abcdef  \n"
        "oncall:ADMIN:shared-secret-0123456789abcd\n"
        "oncall:worker:shared-secret-0123456789abcd\n"
        "weird:admin:with:colons:in:it-0123456789\n"
    )
    token_file.chmod(0o600)
    table = TokenTable.parse(
        f"ops:admin:{ADMIN_SECRET}, ,celery:worker:{WORKER_SECRET}", token_file
    )
    assert table.names == {"ops", "celery", "deploy", "oncall", "weird"}
    assert table.lookup(ADMIN_SECRET) == _caller("ops", Role.ADMIN)
    assert table.lookup("file-secret-0123456789abcdef") == _caller("deploy", Role.WORKER)
    assert table.lookup("shared-secret-0123456789abcd") == _caller(
        "oncall", Role.ADMIN, Role.WORKER
    )
    assert table.lookup("with:colons:in:it-0123456789") == _caller("weird", Role.ADMIN)
    assert table.lookup("") is None
    assert table.lookup(ADMIN_SECRET + " ") is None
    assert table.lookup("nope") is None


def test_one_name_may_hold_two_roles_with_two_secrets() -> None:
    table = TokenTable.parse(
        "ci:admin:first-secret-0123456789,ci:worker:second-secret-012345678", None
    )
    assert table.lookup("first-secret-0123456789") == _caller("ci", Role.ADMIN)
    assert table.lookup("second-secret-012345678") == _caller("ci", Role.WORKER)


def _caller(name: str, *roles: Role) -> object:
    from stageconfig_server.rpc.identity import Caller

    return Caller(name, frozenset(roles))


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("justasecretvalue123456", "STAGECONFIG_TOKENS entry 1: expected name:role:secret"),
        ("a:admin:ok-secret-0123456789,b:root:root-secret-0123456789", "entry 2 (b): the role"),
        ("a:admin:", "entry 1 (a): the secret must be non-empty"),
        ("a:worker:has space-0123456789", "the secret must be non-empty printable ASCII"),
        (":admin:nameless-secret-0123456789", "entry 1: the name must be"),
        ("bad name:admin:named-secret-0123456789", "entry 1: the name must be"),
        ("a:admin:same-secret-0123456789,b:worker:same-secret-0123456789", "share one secret"),
    ],
)
def test_malformed_tokens_refuse_without_echoing_the_secret(value: str, expected: str) -> None:
    with pytest.raises(UnsafeConfiguration) as caught:
        TokenTable.parse(value, None)
    assert expected in caught.value.message
    for part in value.replace(",", ":").split(":"):
        if "secret" in part:
            assert part not in caught.value.message


def test_token_file_errors_name_the_line(tmp_path: Path) -> None:
    token_file = tmp_path / "tokens"
    token_file.write_text("ok:admin:fine-secret-0123456789\nbroken-line-with-secret\n")
    with pytest.raises(UnsafeConfiguration) as caught:
        TokenTable.parse(None, token_file)
    assert caught.value.message == "STAGECONFIG_TOKENS_FILE line 2: expected name:role:secret"
    with pytest.raises(UnsafeConfiguration, match="cannot be read"):
        TokenTable.parse(None, tmp_path / "missing")


def test_world_readable_token_file_and_short_secrets_are_warned_about(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    token_file = tmp_path / "tokens"
    token_file.write_text("dev:admin:short\n")
    token_file.chmod(0o644)
    caplog.set_level(logging.WARNING)
    load_security(
        settings_for(server_env(tmp_path / "db", None, STAGECONFIG_TOKENS_FILE=str(token_file)))
    )
    assert "readable by other users" in caplog.text
    assert "token 'dev' is short" in caplog.text
    assert "dev:admin:short" not in caplog.text


def test_repr_of_tokens_and_settings_hides_secrets(tmp_path: Path) -> None:
    settings = settings_for(server_env(tmp_path / "db", None, STAGECONFIG_TOKENS=TOKENS))
    table = load_security(settings).tokens
    for text in (repr(table), str(table), repr(settings), str(settings)):
        assert ADMIN_SECRET not in text
        assert WORKER_SECRET not in text
    assert repr(table) == ("TokenTable(ops:admin, celery:worker, oncall:admin, oncall:worker)")


# --- where the server may listen --------------------------------------------------------


@pytest.mark.parametrize(
    ("address", "loopback"),
    [
        ("127.0.0.1:50051", True),
        ("127.0.0.1:0", True),
        ("127.8.9.10:50051", True),
        ("localhost:50051", True),
        ("[::1]:50051", True),
        ("unix:/run/stageconfig.sock", True),
        ("0.0.0.0:50051", False),
        ("[::]:50051", False),
        (":50051", False),
        ("10.0.0.5:50051", False),
        ("[2001:db8::1]:50051", False),
        ("stageconfig.internal:50051", False),
    ],
)
def test_is_loopback(address: str, loopback: bool) -> None:
    assert is_loopback(address) is loopback


@pytest.fixture
def tls_ca(tmp_path: Path) -> CertificateAuthority:
    """A throwaway CA."""
    return CertificateAuthority(tmp_path)


@pytest.fixture
def tls_env(tls_ca: CertificateAuthority) -> dict[str, str]:
    """STAGECONFIG_TLS_CERT / _KEY of a freshly issued server certificate."""
    server = tls_ca.issue("stageconfig server", server=True)
    return {
        "STAGECONFIG_TLS_CERT": str(server.cert_path),
        "STAGECONFIG_TLS_KEY": str(server.key_path),
    }


@pytest.mark.parametrize(
    ("with_tokens", "with_tls", "missing"),
    [
        (
            False,
            False,
            "but has no tokens (STAGECONFIG_TOKENS / STAGECONFIG_TOKENS_FILE) and no TLS",
        ),
        (True, False, "but has no TLS (STAGECONFIG_TLS_CERT / STAGECONFIG_TLS_KEY):"),
        (False, True, "but has no tokens (STAGECONFIG_TOKENS / STAGECONFIG_TOKENS_FILE):"),
    ],
)
async def test_exposed_address_without_tokens_or_tls_refuses_before_touching_the_db(
    db_path: Path,
    fake_providers: FakeProviders,
    tls_env: dict[str, str],
    with_tokens: bool,
    with_tls: bool,
    missing: str,
) -> None:
    env = {"STAGECONFIG_ADDRESS": "0.0.0.0:0"}
    if with_tokens:
        env["STAGECONFIG_TOKENS"] = TOKENS
    if with_tls:
        env.update(tls_env)
    with pytest.raises(UnsafeConfiguration) as caught:
        await start_app(db_path, fake_providers, **env)
    assert missing in caught.value.message
    assert "STAGECONFIG_INSECURE=1" in caught.value.message
    assert not await asyncio.to_thread(db_path.exists)


async def test_exposed_address_with_tokens_and_tls_serves(
    db_path: Path,
    fake_providers: FakeProviders,
    tls_env: dict[str, str],
    tls_ca: CertificateAuthority,
) -> None:
    app = await start_app(
        db_path,
        fake_providers,
        STAGECONFIG_ADDRESS="0.0.0.0:0",
        STAGECONFIG_TOKENS=TOKENS,
        **tls_env,
    )
    try:
        credentials = grpc.ssl_channel_credentials(root_certificates=tls_ca.cert_pem)
        async with grpc.aio.secure_channel(f"localhost:{app.port}", credentials) as channel:
            reply = await pbg.StageConfigServiceStub(channel).ListConfigs(
                pb.ListConfigsRequest(),
                metadata=(("authorization", f"Bearer {ADMIN_SECRET}"),),
                timeout=10,
            )
        assert len(reply.stages) == 4
    finally:
        await app.stop(grace=1)


async def test_insecure_opt_in_serves_exposed_with_a_warning(
    db_path: Path, fake_providers: FakeProviders, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    app = await start_app(
        db_path, fake_providers, STAGECONFIG_ADDRESS="0.0.0.0:0", STAGECONFIG_INSECURE="1"
    )
    try:
        async with grpc.aio.insecure_channel(app.target) as channel:
            await pbg.StageConfigServiceStub(channel).ListConfigs(
                pb.ListConfigsRequest(), timeout=10
            )
    finally:
        await app.stop(grace=1)
    assert "STAGECONFIG_INSECURE=1: serving on 0.0.0.0:0 with no tokens" in caplog.text
    assert "authentication is OFF" in caplog.text


async def test_loopback_without_tokens_serves_anonymously_with_a_warning(
    db_path: Path, fake_providers: FakeProviders, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    app = await start_app(db_path, fake_providers)
    try:
        async with grpc.aio.insecure_channel(app.target) as channel:
            stub = pbg.StageConfigServiceStub(channel)
            await stub.UpdateConfig(
                pb.UpdateConfigRequest(
                    stage_type=pb.STAGE_TYPE_SONG,
                    provider_kind=pb.PROVIDER_KIND_SUNO,
                    api_key="suno-anon-key-0001",
                ),
                timeout=10,
            )
            history = await stub.GetConfigHistory(pb.GetConfigHistoryRequest(), timeout=10)
    finally:
        await app.stop(grace=1)
    assert "authentication is OFF" in caplog.text
    assert [e.actor for e in history.entries] == ["anonymous"]


def test_refused_start_exits_non_zero_with_the_reason(db_path: Path, tmp_path: Path) -> None:
    env = server_env(db_path, None, STAGECONFIG_ADDRESS="0.0.0.0:0")
    code, output = ServerProcess(env, cwd=tmp_path).run_to_exit()
    assert code == 2
    assert (
        "stageconfig: refusing to start: STAGECONFIG_ADDRESS 0.0.0.0:0 is not a loopback" in output
    )
    assert "Traceback" not in output
    assert not db_path.exists()


# --- TLS settings ------------------------------------------------------------------------


def _tls_error(tmp_path: Path, **env: str) -> str:
    with pytest.raises(UnsafeConfiguration) as caught:
        load_security(settings_for(server_env(tmp_path / "db", None, **env)))
    return caught.value.message


def test_tls_misconfigurations_are_named(tmp_path: Path) -> None:
    ca = CertificateAuthority(tmp_path)
    server = ca.issue("server", server=True)
    other = ca.issue("other", server=True)
    encrypted = tmp_path / "encrypted.key"
    from cryptography.hazmat.primitives import serialization

    key = serialization.load_pem_private_key(server.key_pem, password=None)
    encrypted.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"pw"),
        )
    )
    cert, key_path = str(server.cert_path), str(server.key_path)
    assert "go together" in _tls_error(tmp_path, STAGECONFIG_TLS_CERT=cert)
    assert "go together" in _tls_error(tmp_path, STAGECONFIG_TLS_KEY=key_path)
    assert "STAGECONFIG_TLS_CLIENT_CA needs" in _tls_error(
        tmp_path, STAGECONFIG_TLS_CLIENT_CA=str(ca.cert_path)
    )
    missing = _tls_error(
        tmp_path, STAGECONFIG_TLS_CERT=str(tmp_path / "nope.crt"), STAGECONFIG_TLS_KEY=key_path
    )
    assert missing.startswith("STAGECONFIG_TLS_CERT ")
    assert "cannot be read" in missing
    not_pem = _tls_error(tmp_path, STAGECONFIG_TLS_CERT=key_path, STAGECONFIG_TLS_KEY=key_path)
    assert "is not a PEM certificate" in not_pem
    mismatch = _tls_error(
        tmp_path, STAGECONFIG_TLS_CERT=cert, STAGECONFIG_TLS_KEY=str(other.key_path)
    )
    assert "is not the private key of the certificate" in mismatch
    assert "unencrypted PEM private key" in _tls_error(
        tmp_path, STAGECONFIG_TLS_CERT=cert, STAGECONFIG_TLS_KEY=str(encrypted)
    )
    bad_ca = _tls_error(
        tmp_path,
        STAGECONFIG_TLS_CERT=cert,
        STAGECONFIG_TLS_KEY=key_path,
        STAGECONFIG_TLS_CLIENT_CA=key_path,
    )
    assert bad_ca.startswith("STAGECONFIG_TLS_CLIENT_CA ")
    key_text = server.key_pem.decode()
    body = "".join(key_text.splitlines()[1:-1])
    for message in (not_pem, mismatch, bad_ca):
        assert body[:40] not in message


def test_group_readable_tls_key_is_warned_about(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    server = CertificateAuthority(tmp_path).issue("server", server=True)
    os.chmod(server.key_path, 0o640)
    caplog.set_level(logging.WARNING)
    security = load_security(
        settings_for(
            server_env(
                tmp_path / "db",
                None,
                STAGECONFIG_TLS_CERT=str(server.cert_path),
                STAGECONFIG_TLS_KEY=str(server.key_path),
            )
        )
    )
    assert security.credentials is not None
    assert not security.mutual_tls
    assert "is readable by other users" in caplog.text
