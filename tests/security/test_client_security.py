"""The Python client against a secured server: tokens on plaintext loopback (metadata),
tokens over TLS (call credentials), mTLS, and what its objects show of secrets.

The clients are synchronous; they run in worker threads so the in-process server's
event loop keeps serving."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import TypeVar

import pytest

from stageconfig import (
    AdminClient,
    ConfigClient,
    PermissionDeniedError,
    StageType,
    TlsConfig,
    UnauthenticatedError,
    UnavailableError,
)
from stageconfig_contract.v1 import stage_config_pb2 as pb
from stageconfig_server.app import StageConfigApp
from tests.fakes.provider_server import FakeProviders
from tests.security.certs import CertificateAuthority, Issued
from tests.security.conftest import (
    ADMIN_SECRET,
    STAGES,
    TOKENS,
    UNKNOWN_SECRET,
    WORKER_SECRET,
)
from tests.support.servers import start_app

T = TypeVar("T")


async def _in_thread(work: Callable[[], T]) -> T:
    return await asyncio.to_thread(work)


async def _seed(app: StageConfigApp, tls: TlsConfig | None = None) -> None:
    def run() -> None:
        with AdminClient(f"localhost:{app.port}", ADMIN_SECRET, tls=tls) as admin:
            for case in STAGES:
                stage = StageType(pb.StageType.Name(case.stage).removeprefix("STAGE_TYPE_"))
                provider = pb.ProviderKind.Name(case.provider).removeprefix("PROVIDER_KIND_")
                admin.update_config(stage, provider, api_key=case.key, model=case.model)

    await _in_thread(run)


def _ready_client(target: str, **kwargs: object) -> ConfigClient:
    client = ConfigClient(target, stages=[StageType.POEM], **kwargs)  # type: ignore[arg-type]
    client.start()
    try:
        client.wait_ready(timeout=15)
    except BaseException:
        client.close()
        raise
    return client


async def test_tokens_on_a_plaintext_loopback_channel(secured_app: StageConfigApp) -> None:
    target = secured_app.target
    await _seed(secured_app)

    def admin_calls() -> None:
        with AdminClient(target, ADMIN_SECRET) as admin:
            assert len(admin.list_configs().stages) == 4
        with AdminClient(target, UNKNOWN_SECRET) as stranger, pytest.raises(UnauthenticatedError):
            stranger.list_configs()
        with AdminClient(target, WORKER_SECRET) as worker, pytest.raises(PermissionDeniedError):
            worker.list_configs()

    await _in_thread(admin_calls)
    client = await _in_thread(lambda: _ready_client(target, token=WORKER_SECRET))
    try:
        poem = client.get(StageType.POEM)
        assert poem.api_key == STAGES[0].key
        shown = repr(client) + repr(poem) + str(poem) + repr(client.snapshot())
        assert STAGES[0].key not in shown
        assert WORKER_SECRET not in shown
    finally:
        await _in_thread(client.close)


@pytest.fixture
def pki(tmp_path: Path) -> tuple[CertificateAuthority, Issued, Issued]:
    """A CA, its server certificate and a client certificate."""
    ca = CertificateAuthority(tmp_path)
    return ca, ca.issue("stageconfig", server=True), ca.issue("worker", server=False)


@pytest.fixture
async def mtls_app(
    db_path: Path, fake_providers: FakeProviders, pki: tuple[CertificateAuthority, Issued, Issued]
) -> AsyncIterator[StageConfigApp]:
    """A server with tokens and mTLS."""
    ca, server, _client = pki
    app = await start_app(
        db_path,
        fake_providers,
        STAGECONFIG_TOKENS=TOKENS,
        STAGECONFIG_TLS_CERT=str(server.cert_path),
        STAGECONFIG_TLS_KEY=str(server.key_path),
        STAGECONFIG_TLS_CLIENT_CA=str(ca.cert_path),
    )
    try:
        yield app
    finally:
        await app.stop(grace=1)


async def test_tokens_over_mtls(
    mtls_app: StageConfigApp, pki: tuple[CertificateAuthority, Issued, Issued]
) -> None:
    ca, _server, client_cert = pki
    tls = {
        "root_certificates": ca.cert_pem,
        "client_certificate": client_cert.cert_pem,
        "client_key": client_cert.key_pem,
    }
    target = f"localhost:{mtls_app.port}"
    await _seed(mtls_app, TlsConfig(**tls))
    client = await _in_thread(
        lambda: _ready_client(target, token=WORKER_SECRET, tls=TlsConfig(**tls))
    )
    try:
        assert client.get(StageType.POEM).api_key == STAGES[0].key
    finally:
        await _in_thread(client.close)

    def refused_without_certificate() -> None:
        with (
            AdminClient(
                target, ADMIN_SECRET, tls=TlsConfig(root_certificates=ca.cert_pem)
            ) as admin,
            pytest.raises(UnavailableError),
        ):
            admin.list_configs()

    await _in_thread(refused_without_certificate)

    def admin_sees_masked_keys() -> None:
        with AdminClient(target, ADMIN_SECRET, tls=TlsConfig(**tls)) as admin:
            overview = admin.list_configs()
        shown = repr(overview) + str(overview)
        assert "POEM" in shown
        for case in STAGES:
            assert case.key not in shown

    await _in_thread(admin_sees_masked_keys)


async def test_tls_without_a_token_is_unauthenticated(
    mtls_app: StageConfigApp, pki: tuple[CertificateAuthority, Issued, Issued]
) -> None:
    ca, _server, client_cert = pki

    def call() -> None:
        with (
            AdminClient(
                f"localhost:{mtls_app.port}",
                tls=TlsConfig(
                    root_certificates=ca.cert_pem,
                    client_certificate=client_cert.cert_pem,
                    client_key=client_cert.key_pem,
                ),
            ) as admin,
            pytest.raises(UnauthenticatedError),
        ):
            admin.list_configs()

    await _in_thread(call)
