"""How a snapshot travels through the agent's segment: one version byte, then JSON.

JSON because a reader decodes it with the standard library only (no protobuf message,
no grpc), once per new generation — never on ``get()``. Every ``StageConfig`` field
is carried, the plaintext ``api_key`` too: the segment is RAM only and mode 0600
(docs/security.md).

Forward compatibility: a reader refuses a payload whose version byte it does not know
(it keeps what it holds and says so); within version 1 a reader ignores keys it does
not know, a config whose stage or provider it cannot represent is left out (the stage
then keeps its previous config, like a ConfigClient refusing it), and an unknown status,
cause or source becomes UNSPECIFIED, and a fallback route with an unknown provider is
left out (the others keep their server numbering, ``Route.index``).
"""

from __future__ import annotations

import json
from datetime import datetime
from types import MappingProxyType
from typing import Any

from stageconfig._store import ConfigSnapshot, SnapshotSource
from stageconfig._types import (
    ConfigSource,
    ConfigStatus,
    ProviderKind,
    Route,
    StageConfig,
    StageType,
    StatusCause,
)

CODEC_VERSION = 1


class UnsupportedPayload(ValueError):
    """A payload written by a newer agent in a format this reader does not know."""


def _time(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def config_fields(config: StageConfig, key: dict[str, str]) -> dict[str, Any]:
    """A config's fields as JSON, in the order both the segment and the last-known-good
    file (``_cache_file``) write them, with ``key`` — how each carries the API key — in
    third place; each adds its own fields after these."""
    return {
        "stage_type": config.stage_type.value,
        "provider_kind": config.provider_kind.value,
        **key,
        "model": config.model,
        "revision": config.revision,
        "status": config.status.value,
        "source": config.source.value,
        "options": dict(config.options),
        "status_reason": config.status_reason,
        "api_key_masked": config.api_key_masked,
        "api_key_fingerprint": config.api_key_fingerprint,
        "updated_at": _time(config.updated_at),
        "models_cache_updated_at": _time(config.models_cache_updated_at),
    }


def _config_to_dict(config: StageConfig) -> dict[str, Any]:
    return {
        **config_fields(config, {"api_key": config.api_key}),
        "status_cause": config.status_cause.value,
        "fallbacks": [_route_to_dict(route) for route in config.fallbacks],
    }


def _route_to_dict(route: Route) -> dict[str, Any]:
    return {
        "index": route.index,
        "provider_kind": route.provider_kind.value,
        "api_key": route.api_key,
        "model": route.model,
        "options": dict(route.options),
        "status": route.status.value,
        "status_reason": route.status_reason,
        "status_cause": route.status_cause.value,
        "api_key_masked": route.api_key_masked,
        "api_key_fingerprint": route.api_key_fingerprint,
    }


def _route_from_dict(item: dict[str, Any]) -> Route | None:
    provider = _member(ProviderKind, item.get("provider_kind"), None)
    if provider is None:
        return None  # a provider this client cannot represent: the route is left out
    return Route(
        provider_kind=provider,
        api_key=str(item.get("api_key", "")),
        model=str(item.get("model", "")),
        options=MappingProxyType({str(k): str(v) for k, v in item.get("options", {}).items()}),
        status=_member(ConfigStatus, item.get("status"), ConfigStatus.UNSPECIFIED),
        status_reason=str(item.get("status_reason", "")),
        status_cause=_member(StatusCause, item.get("status_cause"), StatusCause.UNSPECIFIED),
        api_key_masked=bool(item.get("api_key_masked", False)),
        api_key_fingerprint=str(item.get("api_key_fingerprint", "")),
        index=int(item.get("index", 0)),
    )


def encode(snapshot: ConfigSnapshot) -> bytes:
    """The payload of ``snapshot`` (every stage's config, its revision and source)."""
    body = {
        "revision": snapshot.revision,
        "source": snapshot.source.value,
        "stages": sorted(snapshot.stages),
        "configs": [_config_to_dict(c) for c in snapshot.configs.values()],
    }
    return bytes([CODEC_VERSION]) + json.dumps(body, separators=(",", ":")).encode()


def _member(kind: Any, value: object, default: Any) -> Any:
    try:
        return kind(value)
    except ValueError:
        return default


def _parse_time(value: object) -> datetime | None:
    return datetime.fromisoformat(value) if isinstance(value, str) else None


def _config_from_dict(item: dict[str, Any]) -> StageConfig | None:
    stage = _member(StageType, item.get("stage_type"), None)
    provider = _member(ProviderKind, item.get("provider_kind"), None)
    if stage is None or provider is None:
        return None  # a stage or provider this client cannot represent
    return StageConfig(
        stage_type=stage,
        provider_kind=provider,
        api_key=str(item.get("api_key", "")),
        model=str(item.get("model", "")),
        revision=int(item.get("revision", 0)),
        status=_member(ConfigStatus, item.get("status"), ConfigStatus.UNSPECIFIED),
        source=_member(ConfigSource, item.get("source"), ConfigSource.UNSPECIFIED),
        options=MappingProxyType({str(k): str(v) for k, v in item.get("options", {}).items()}),
        status_reason=str(item.get("status_reason", "")),
        api_key_masked=bool(item.get("api_key_masked", False)),
        api_key_fingerprint=str(item.get("api_key_fingerprint", "")),
        updated_at=_parse_time(item.get("updated_at")),
        models_cache_updated_at=_parse_time(item.get("models_cache_updated_at")),
        status_cause=_member(StatusCause, item.get("status_cause"), StatusCause.UNSPECIFIED),
        fallbacks=tuple(
            route for route in map(_route_from_dict, item.get("fallbacks", [])) if route is not None
        ),
    )


def decode(payload: bytes) -> ConfigSnapshot:
    """The snapshot in ``payload`` (UnsupportedPayload: a version this reader lacks)."""
    if not payload or payload[0] != CODEC_VERSION:
        version = payload[0] if payload else None
        raise UnsupportedPayload(
            f"the agent publishes snapshots in format {version}; this client reads "
            f"{CODEC_VERSION} (upgrade the worker's stageconfig package)"
        )
    body = json.loads(payload[1:])
    configs: dict[StageType, StageConfig] = {}
    for item in body.get("configs", []):
        config = _config_from_dict(item)
        if config is not None:
            configs[config.stage_type] = config
    stages = frozenset(
        s for s in (_member(StageType, name, None) for name in body.get("stages", [])) if s
    )
    return ConfigSnapshot(
        revision=int(body.get("revision", 0)),
        configs=MappingProxyType(configs),
        stages=stages,
        source=_member(SnapshotSource, body.get("source"), SnapshotSource.SNAPSHOT),
    )
