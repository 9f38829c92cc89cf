"""PikaAdapter against the fake fal.ai platform API."""

from __future__ import annotations

import pytest

from stageconfig_server.domain import ConfigStatus, ProviderKind, StatusCause
from stageconfig_server.providers import PikaAdapter, ProviderCredentials, ProviderFailure
from stageconfig_server.providers.pika import DEFAULT_BASE_URL, MODELS
from tests.fakes.provider_server import FakeProviders

from .conftest import ADAPTER_TIMEOUT, SECRET_KEY


@pytest.fixture
def adapter(fake: FakeProviders) -> PikaAdapter:
    return PikaAdapter(fake.base_url(ProviderKind.PIKA), timeout_seconds=ADAPTER_TIMEOUT)


async def test_accepted_key_gives_the_static_endpoint_ids(
    adapter: PikaAdapter, credentials: ProviderCredentials
) -> None:
    assert await adapter.list_models(credentials) == [
        "fal-ai/pika/v2.2/text-to-video",
        "fal-ai/pika/v2.2/image-to-video",
        "fal-ai/pika/v2.2/pikascenes",
        "fal-ai/pika/v2.1/text-to-video",
        "fal-ai/pika/v2/turbo/text-to-video",
    ]
    assert list(MODELS) == await adapter.list_models(credentials)


async def test_key_checked_on_pricing_with_key_scheme(
    adapter: PikaAdapter, fake: FakeProviders, credentials: ProviderCredentials
) -> None:
    await adapter.list_models(credentials)
    (request,) = fake.requests
    assert (request.method, request.path) == ("GET", "/v1/models/pricing")
    assert request.query == {"endpoint_id": "fal-ai/pika/v2.2/text-to-video"}
    assert request.header("Authorization") == f"Key {SECRET_KEY}"


@pytest.mark.parametrize(
    ("failure", "status", "cause"),
    [
        ("invalid_key", ConfigStatus.INVALID, StatusCause.AUTH),
        ("permission", ConfigStatus.INVALID, StatusCause.PERMISSION),
        ("quota", ConfigStatus.ERROR, StatusCause.QUOTA),  # 403 "Exhausted balance"
        ("rate_limit", ConfigStatus.ERROR, StatusCause.RATE_LIMIT),
        ("server_error", ConfigStatus.ERROR, StatusCause.UPSTREAM),
        ("malformed", ConfigStatus.ERROR, StatusCause.UPSTREAM),
    ],
)
async def test_failure_table(
    adapter: PikaAdapter,
    fake: FakeProviders,
    credentials: ProviderCredentials,
    failure: str,
    status: ConfigStatus,
    cause: StatusCause,
) -> None:
    fake.set_failure(ProviderKind.PIKA, failure)
    with pytest.raises(ProviderFailure) as caught:
        await adapter.list_models(credentials)
    assert (caught.value.status, caught.value.cause) == (status, cause)
    assert SECRET_KEY not in caught.value.message


async def test_fal_no_user_detail_reaches_the_admin(
    adapter: PikaAdapter, fake: FakeProviders
) -> None:
    fake.reject_key("fal-revoked")
    with pytest.raises(ProviderFailure) as caught:
        await adapter.list_models(ProviderCredentials("fal-revoked", {}))
    assert (caught.value.status, caught.value.cause) == (ConfigStatus.INVALID, StatusCause.AUTH)
    assert "No user found for Key ID and Secret" in caught.value.message


def test_default_base_url() -> None:
    assert PikaAdapter().base_url == DEFAULT_BASE_URL == "https://api.fal.ai"
