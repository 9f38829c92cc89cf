"""The public surface of ``stageconfig``: exactly these names, sorted."""

from __future__ import annotations

import stageconfig
import stageconfig.contrib.celery
import stageconfig.providers

EXPECTED = [
    "AdminClient",
    "AllRoutesFailed",
    "AttachedClient",
    "BreakerState",
    "CacheFileError",
    "ChangeReason",
    "ClientClosedError",
    "ClientState",
    "ConfigChangeEvent",
    "ConfigClient",
    "ConfigSnapshot",
    "ConfigSource",
    "ConfigStatus",
    "ConflictError",
    "DeadlineExceededError",
    "InvalidArgumentError",
    "KeyRejectedError",
    "NotFoundError",
    "NotReadyError",
    "PermissionDeniedError",
    "ProviderKind",
    "RPCError",
    "Route",
    "SecretMismatchError",
    "SnapshotSource",
    "StageChange",
    "StageConfig",
    "StageConfigError",
    "StageNotConfiguredError",
    "StageType",
    "StateChange",
    "StatusCause",
    "StatusCode",
    "TimingOptions",
    "TlsConfig",
    "UnauthenticatedError",
    "UnavailableError",
    "attach",
]


def test_all_is_pinned_and_sorted() -> None:
    assert stageconfig.__all__ == EXPECTED
    assert sorted(stageconfig.__all__) == stageconfig.__all__
    for name in stageconfig.__all__:
        exported = getattr(stageconfig, name)
        assert exported.__doc__, f"{name} has no docstring"


def test_integrations_are_pinned_too() -> None:
    assert stageconfig.contrib.celery.__all__ == [
        "close_client",
        "current_client",
        "current_config",
        "setup_stageconfig",
    ]
    assert stageconfig.providers.__all__ == [
        "DEFAULT_BREAKER_SETTINGS",
        "BreakerRegistry",
        "BreakerSettings",
        "GeminiChat",
        "HttpProviderClient",
        "OpenAICompatibleChat",
        "PikaClient",
        "ProviderClient",
        "ProviderFactory",
        "SpeechKitClient",
        "SunoClient",
        "TextGenerator",
        "default_registry",
        "run_with_fallback",
    ]
