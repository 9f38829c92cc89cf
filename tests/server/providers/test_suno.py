"""SunoAdapter's own behaviour: an error in a 200 answer's body (the shared tables:
test_adapter_tables)."""

from __future__ import annotations

import pytest

from stageconfig_server.domain import ProviderKind
from stageconfig_server.providers import ProviderCredentials, ProviderFailure, SunoAdapter
from tests.fakes.provider_server import FakeProviders

from .conftest import ADAPTER_TIMEOUT


@pytest.fixture
def adapter(fake: FakeProviders) -> SunoAdapter:
    return SunoAdapter(fake.base_url(ProviderKind.SUNO), timeout_seconds=ADAPTER_TIMEOUT)


async def test_http_200_with_error_code_names_both(
    adapter: SunoAdapter, fake: FakeProviders, credentials: ProviderCredentials
) -> None:
    fake.set_failure(ProviderKind.SUNO, "body_error_455")
    with pytest.raises(ProviderFailure) as caught:
        await adapter.list_models(credentials)
    assert "HTTP 200, code 455" in caught.value.message
    assert "maintenance" in caught.value.message
