"""stageconfig: the Python client of the stageconfig service.

The domain types and the error tree are public here; ``ConfigClient`` keeps a hot,
in-memory copy of every stage's config for workers (``TlsConfig`` and
``TimingOptions`` group its settings; ``stageconfig.contrib.celery`` wires it into
Celery, ``stageconfig.providers`` builds provider SDK clients from a config);
``AdminClient`` is the typed client of the admin RPCs (``stageconfigctl`` and
the web page use it).
"""

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

__all__ = [
    "AdminClient",
    "AllRoutesFailed",
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
]
