"""PikaAdapter's own behaviour: the static endpoint list is the module's (the shared
tables: test_adapter_tables)."""

from __future__ import annotations

import pytest

from stageconfig_server.domain import ProviderKind
from stageconfig_server.providers import PikaAdapter, ProviderCredentials
from stageconfig_server.providers.pika import MODELS
from tests.fakes.provider_server import FakeProviders

from .conftest import ADAPTER_TIMEOUT


@pytest.fixture
def adapter(fake: FakeProviders) -> PikaAdapter:
    return PikaAdapter(fake.base_url(ProviderKind.PIKA), timeout_seconds=ADAPTER_TIMEOUT)


async def test_accepted_key_gives_the_static_endpoint_ids(
    adapter: PikaAdapter, credentials: ProviderCredentials
) -> None:
    assert list(MODELS) == await adapter.list_models(credentials)
