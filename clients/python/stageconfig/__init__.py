"""stageconfig: the Python client of the stageconfig service.

The domain types and the error tree are public here; ``ConfigClient`` keeps a hot,
in-memory copy of every stage's config for workers (``TlsConfig`` and
``TimingOptions`` group its settings; ``stageconfig.contrib.celery`` wires it into
Celery, ``stageconfig.providers`` builds provider SDK clients from a config);
``attach`` reads the same config from a host's ``stageconfig-agent`` through shared
memory (``AttachedClient``: no grpc, no thread); ``AdminClient`` is the typed client of
the admin RPCs (``stageconfigctl`` and the web page use it).

Names are imported on first use (PEP 562): ``from stageconfig import StageType`` or
``stageconfig.attach`` loads neither grpc nor the watch machinery, so a process that
only attaches to an agent never imports grpc.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from stageconfig._attached import AttachedClient, attach
    from stageconfig._client import ConfigClient
    from stageconfig._events import ClientState, ConfigChangeEvent, StateChange
    from stageconfig._options import TimingOptions
    from stageconfig._store import ConfigSnapshot, SnapshotSource, StageChange
    from stageconfig._types import (
        BreakerState,
        ChangeReason,
        ConfigSource,
        ConfigStatus,
        ProviderKind,
        Route,
        StageConfig,
        StageType,
        StatusCause,
    )
    from stageconfig.admin import AdminClient
    from stageconfig.errors import (
        AllRoutesFailed,
        CacheFileError,
        ClientClosedError,
        ConflictError,
        DeadlineExceededError,
        InvalidArgumentError,
        KeyRejectedError,
        NotFoundError,
        NotReadyError,
        PermissionDeniedError,
        RPCError,
        SecretMismatchError,
        StageConfigError,
        StageNotConfiguredError,
        StatusCode,
        UnauthenticatedError,
        UnavailableError,
    )
    from stageconfig.tls import TlsConfig

_HOMES: dict[str, str] = {
    "AdminClient": "stageconfig.admin",
    "AttachedClient": "stageconfig._attached",
    "attach": "stageconfig._attached",
    "ConfigClient": "stageconfig._client",
    "ClientState": "stageconfig._events",
    "ConfigChangeEvent": "stageconfig._events",
    "StateChange": "stageconfig._events",
    "TimingOptions": "stageconfig._options",
    "ConfigSnapshot": "stageconfig._store",
    "SnapshotSource": "stageconfig._store",
    "StageChange": "stageconfig._store",
    "TlsConfig": "stageconfig.tls",
    **{
        name: "stageconfig._types"
        for name in (
            "BreakerState",
            "ChangeReason",
            "ConfigSource",
            "ConfigStatus",
            "ProviderKind",
            "Route",
            "StageConfig",
            "StageType",
            "StatusCause",
        )
    },
    **{
        name: "stageconfig.errors"
        for name in (
            "AllRoutesFailed",
            "CacheFileError",
            "ClientClosedError",
            "ConflictError",
            "DeadlineExceededError",
            "InvalidArgumentError",
            "KeyRejectedError",
            "NotFoundError",
            "NotReadyError",
            "PermissionDeniedError",
            "RPCError",
            "SecretMismatchError",
            "StageConfigError",
            "StageNotConfiguredError",
            "StatusCode",
            "UnauthenticatedError",
            "UnavailableError",
        )
    },
}
"""Where each public name lives (imported by ``__getattr__`` on first use)."""


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'stageconfig' has no attribute {name!r}")
    value = getattr(importlib.import_module(home), name)
    globals()[name] = value  # the next access is a plain module attribute
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_HOMES})


__all__ = [
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
