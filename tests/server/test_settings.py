"""The provider env names come from the contract's one table (``facts``)."""

from __future__ import annotations

from stageconfig_contract import facts
from stageconfig_server.domain import ProviderKind, StageType
from stageconfig_server.fallback import fallback_config, legacy_entries
from stageconfig_server.settings import LegacySettings, Settings
from tests.support.servers import empty_legacy, settings_for


def test_legacy_settings_read_exactly_the_contracts_variables() -> None:
    aliases = {f.validation_alias for f in LegacySettings.model_fields.values()}
    assert aliases == set(facts.LEGACY_ENV_NAMES)
    every = empty_legacy(**{name: f"value-of-{name}" for name in facts.LEGACY_ENV_NAMES})
    for name in facts.LEGACY_ENV_NAMES:
        assert every.value(name) == f"value-of-{name}"
    assert empty_legacy().value("GEMINI_API_KEY") == ""


def test_base_url_overrides_use_the_contracts_names() -> None:
    env = {
        facts.base_url_env(kind.value): f"http://127.0.0.1:9/{kind.value}" for kind in ProviderKind
    }
    urls = settings_for(env).provider_base_urls()
    assert urls == {kind: f"http://127.0.0.1:9/{kind.value}" for kind in ProviderKind}
    assert set(Settings(_env_file=None).provider_base_urls()) == set(ProviderKind)  # type: ignore[call-arg]


def test_fallback_order_is_the_contracts() -> None:
    legacy = empty_legacy()
    for stage in StageType:
        order = [e.provider_kind.value for e in legacy_entries(legacy, stage)]
        assert tuple(order) == facts.LEGACY_FALLBACK_ORDER[stage.value]


def test_yandex_fallback_carries_its_folder_option() -> None:
    legacy = empty_legacy(YANDEX_GPT_API_KEY="AQVN-legacy", YANDEX_FOLDER_ID="b1gfolder")
    config = fallback_config(legacy, StageType.POEM)
    assert config is not None
    assert (config.provider_kind, dict(config.options)) == (
        ProviderKind.YANDEX_GPT,
        {"folder_id": "b1gfolder"},
    )
    assert config.model == "yandexgpt/latest"
    assert "AQVN-legacy" not in repr(legacy_entries(legacy, StageType.POEM))
