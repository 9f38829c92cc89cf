"""SpeechKitAdapter: a static voice list that never touches the network."""

from __future__ import annotations

import pytest

from stageconfig_server.domain import ConfigStatus, ProviderKind, StatusCause
from stageconfig_server.providers import ProviderCredentials, ProviderFailure, SpeechKitAdapter
from tests.fakes.provider_server import FakeProviders

PROVIDERS_MD_VOICES = [
    *("alena", "filipp", "ermil", "jane", "omazh", "zahar", "dasha", "julia", "lera", "masha"),
    *("marina", "alexander", "kirill", "anton", "john", "lea", "amira", "madi", "saule"),
    *("zhanar", "nigora"),
]
PROVIDERS_MD_ROLES = {"neutral", "good", "evil", "friendly", "strict", "whisper"}


@pytest.fixture
def adapter(fake: FakeProviders) -> SpeechKitAdapter:
    return SpeechKitAdapter(fake.base_url(ProviderKind.SPEECHKIT))


async def test_static_list_without_any_request(
    adapter: SpeechKitAdapter, fake: FakeProviders, credentials: ProviderCredentials
) -> None:
    models = await adapter.list_models(credentials)
    assert fake.requests == []
    voices = [m for m in models if ":" not in m]
    assert voices == PROVIDERS_MD_VOICES
    roles = {m.partition(":")[2] for m in models if ":" in m}
    assert roles == PROVIDERS_MD_ROLES
    assert {"alena:good", "jane:evil", "marina:whisper", "john"} <= set(models)
    assert len(models) == len(set(models))


async def test_role_ids_name_a_listed_voice(
    adapter: SpeechKitAdapter, credentials: ProviderCredentials
) -> None:
    for model in await adapter.list_models(credentials):
        voice, _, role = model.partition(":")
        assert voice in PROVIDERS_MD_VOICES
        assert not role or role in PROVIDERS_MD_ROLES


async def test_empty_key_is_invalid(adapter: SpeechKitAdapter) -> None:
    with pytest.raises(ProviderFailure) as caught:
        await adapter.list_models(ProviderCredentials("   ", {}))
    assert (caught.value.status, caught.value.cause) == (ConfigStatus.INVALID, StatusCause.AUTH)
