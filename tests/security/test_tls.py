"""Real TLS and mTLS handshakes against a real server, with certificates made here."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest

from stageconfig_contract.v1 import stage_config_pb2 as pb
from stageconfig_contract.v1 import stage_config_pb2_grpc as pbg
from stageconfig_server.app import StageConfigApp
from tests.fakes.provider_server import FakeProviders
from tests.security.certs import CertificateAuthority, Issued
from tests.security.conftest import ADMIN_SECRET, TOKENS, WORKER_SECRET, bearer
from tests.support.servers import start_app


@dataclass(frozen=True)
class Pki:
    """A CA the server trusts, its server and client certificates, and an outsider."""

    ca: CertificateAuthority
    server: Issued
    client: Issued
    rogue_ca: CertificateAuthority
    rogue_client: Issued


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    """Certificates for one test."""
    ca = CertificateAuthority(tmp_path / "trusted", "trusted CA")
    rogue = CertificateAuthority(tmp_path / "rogue", "rogue CA")
    return Pki(
        ca=ca,
        server=ca.issue("stageconfig", server=True),
        client=ca.issue("celery-worker", server=False),
        rogue_ca=rogue,
        rogue_client=rogue.issue("intruder", server=False),
    )


def _tls_env(pki: Pki, *, mutual: bool) -> dict[str, str]:
    env = {
        "STAGECONFIG_TOKENS": TOKENS,
        "STAGECONFIG_TLS_CERT": str(pki.server.cert_path),
        "STAGECONFIG_TLS_KEY": str(pki.server.key_path),
    }
    if mutual:
        env["STAGECONFIG_TLS_CLIENT_CA"] = str(pki.ca.cert_path)
    return env


@pytest.fixture
async def tls_app(
    db_path: Path, fake_providers: FakeProviders, pki: Pki
) -> AsyncIterator[StageConfigApp]:
    """A server with TLS (no client certificates asked) and tokens."""
    app = await start_app(db_path, fake_providers, **_tls_env(pki, mutual=False))
    try:
        yield app
    finally:
        await app.stop(grace=1)


@pytest.fixture
async def mtls_app(
    db_path: Path, fake_providers: FakeProviders, pki: Pki
) -> AsyncIterator[StageConfigApp]:
    """A server with mTLS (a client certificate from the trusted CA required) and tokens."""
    app = await start_app(db_path, fake_providers, **_tls_env(pki, mutual=True))
    try:
        yield app
    finally:
        await app.stop(grace=1)


async def _list_configs(
    target: str,
    credentials: grpc.ChannelCredentials | None,
    secret: str | None = ADMIN_SECRET,
) -> pb.ListConfigsResponse:
    channel = (
        grpc.aio.secure_channel(target, credentials)
        if credentials is not None
        else grpc.aio.insecure_channel(target)
    )
    async with channel:
        stub = pbg.StageConfigServiceStub(channel)
        reply: pb.ListConfigsResponse = await stub.ListConfigs(
            pb.ListConfigsRequest(), metadata=bearer(secret), timeout=10
        )
        return reply


def _localhost(app: StageConfigApp) -> str:
    return f"localhost:{app.port}"


async def test_tls_handshake_with_token_as_call_credentials(
    tls_app: StageConfigApp, pki: Pki
) -> None:
    # The token travels as call credentials, the way a TLS client sends it.
    credentials = grpc.composite_channel_credentials(
        grpc.ssl_channel_credentials(root_certificates=pki.ca.cert_pem),
        grpc.access_token_call_credentials(ADMIN_SECRET),
    )
    reply = await _list_configs(_localhost(tls_app), credentials, secret=None)
    assert len(reply.stages) == 4
    # 127.0.0.1 is in the certificate too.
    reply = await _list_configs(
        tls_app.target, grpc.ssl_channel_credentials(root_certificates=pki.ca.cert_pem)
    )
    assert len(reply.stages) == 4


async def test_tls_still_requires_the_token(tls_app: StageConfigApp, pki: Pki) -> None:
    credentials = grpc.ssl_channel_credentials(root_certificates=pki.ca.cert_pem)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await _list_configs(_localhost(tls_app), credentials, secret=None)
    assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await _list_configs(_localhost(tls_app), credentials, secret=WORKER_SECRET)
    assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED


async def test_plaintext_client_cannot_talk_to_a_tls_server(tls_app: StageConfigApp) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await _list_configs(_localhost(tls_app), None)
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE


async def test_client_refuses_a_server_certificate_it_does_not_trust(
    tls_app: StageConfigApp, pki: Pki
) -> None:
    credentials = grpc.ssl_channel_credentials(root_certificates=pki.rogue_ca.cert_pem)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await _list_configs(_localhost(tls_app), credentials)
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE


async def test_mtls_admits_a_client_certificate_from_the_trusted_ca(
    mtls_app: StageConfigApp, pki: Pki
) -> None:
    credentials = grpc.ssl_channel_credentials(
        root_certificates=pki.ca.cert_pem,
        private_key=pki.client.key_pem,
        certificate_chain=pki.client.cert_pem,
    )
    reply = await _list_configs(_localhost(mtls_app), credentials)
    assert len(reply.stages) == 4
    # mTLS authenticates the machine; the token still decides the role.
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await _list_configs(_localhost(mtls_app), credentials, secret=None)
    assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED


async def test_mtls_refuses_a_client_without_a_certificate(
    mtls_app: StageConfigApp, pki: Pki
) -> None:
    credentials = grpc.ssl_channel_credentials(root_certificates=pki.ca.cert_pem)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await _list_configs(_localhost(mtls_app), credentials)
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE


async def test_mtls_refuses_a_certificate_from_another_ca(
    mtls_app: StageConfigApp, pki: Pki
) -> None:
    credentials = grpc.ssl_channel_credentials(
        root_certificates=pki.ca.cert_pem,
        private_key=pki.rogue_client.key_pem,
        certificate_chain=pki.rogue_client.cert_pem,
    )
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await _list_configs(_localhost(mtls_app), credentials)
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
