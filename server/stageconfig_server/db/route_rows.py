"""Fallback routes ↔ JSON: the one mapping of ``provider_configs.fallbacks`` and of the
``fallbacks`` list in each revision-log state.

The row keeps each route's ciphertext (``api_key_encrypted``) next to its ``api_keys``
id; the log state keeps only the id, like the primary's key, so rollback and resuming
watchers read the ciphertext from ``api_keys`` (and a key rotation touches one place).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from stageconfig_server.db.records import StoredRoute
from stageconfig_server.domain import ConfigStatus, FieldDiff, ProviderKind, StatusCause


def route_json(route: StoredRoute, *, ciphertext: bool) -> dict[str, Any]:
    """One route as stored (``ciphertext``: the row) or as logged (key id only)."""
    values: dict[str, Any] = {
        "provider_kind": route.provider_kind.value,
        "api_key_id": route.api_key_id,
        "fingerprint": route.api_key_fingerprint,
        "model": route.model,
        "options": dict(route.options),
        "status": route.status.value,
        "status_reason": route.status_reason,
        "status_cause": route.status_cause.value if route.status_cause else None,
        "models_cache": list(route.models_cache),
    }
    if ciphertext:
        values["api_key_encrypted"] = route.api_key_encrypted
    return values


def routes_json(routes: Iterable[StoredRoute], *, ciphertext: bool) -> list[dict[str, Any]]:
    """Every route, in order (see ``route_json``)."""
    return [route_json(route, ciphertext=ciphertext) for route in routes]


def routes_from_json(
    values: Sequence[Mapping[str, Any]] | None, ciphertexts: Mapping[int, str] | None = None
) -> tuple[StoredRoute, ...]:
    """The routes of a row (ciphertext inline) or of a log state (``ciphertexts`` by
    ``api_keys`` id)."""
    routes = []
    for value in values or ():
        key_id = value.get("api_key_id")
        ciphertext = value.get("api_key_encrypted") or ""
        if not ciphertext and ciphertexts is not None and key_id is not None:
            ciphertext = ciphertexts.get(key_id, "")
        cause = value.get("status_cause")
        routes.append(
            StoredRoute(
                provider_kind=ProviderKind(value["provider_kind"]),
                api_key_encrypted=ciphertext,
                api_key_id=key_id,
                api_key_fingerprint=value.get("fingerprint") or "",
                model=value["model"],
                options=dict(value.get("options") or {}),
                status=ConfigStatus(value["status"]),
                status_cause=StatusCause(cause) if cause else None,
                status_reason=value.get("status_reason") or "",
                models_cache=tuple(value.get("models_cache") or ()),
            )
        )
    return tuple(routes)


def route_key_ids(values: Sequence[Mapping[str, Any]] | None) -> set[int]:
    """The ``api_keys`` ids a stored or logged route list references."""
    return {v["api_key_id"] for v in values or () if v.get("api_key_id") is not None}


def rotate_routes(values: Sequence[Mapping[str, Any]] | None, rotate: Any) -> list[dict[str, Any]]:
    """A row's route list with every ciphertext re-encrypted by ``rotate``."""
    return [
        {**v, "api_key_encrypted": rotate(v["api_key_encrypted"])}
        if v.get("api_key_encrypted")
        else dict(v)
        for v in values or ()
    ]


def diff_routes(old: Sequence[StoredRoute], new: Sequence[StoredRoute]) -> list[FieldDiff]:
    """The admin-facing diff of two route lists: ``fallbacks[i].field`` old → new, keys
    only as fingerprints; a removed route shows its fields going to ""."""

    def fields(route: StoredRoute | None) -> dict[str, str]:
        if route is None:
            return {}
        return {
            "provider_kind": route.provider_kind.value,
            "api_key": f"fingerprint {route.api_key_fingerprint}",
            "model": route.model,
            "options": ",".join(f"{k}={v}" for k, v in sorted(route.options.items())),
            "status": route.status.value,
            "status_reason": route.status_reason,
        }

    diffs = []
    for index in range(max(len(old), len(new))):
        before = fields(old[index] if index < len(old) else None)
        after = fields(new[index] if index < len(new) else None)
        for name in dict.fromkeys([*before, *after]):
            if before.get(name, "") != after.get(name, ""):
                diffs.append(
                    FieldDiff(
                        f"fallbacks[{index}].{name}", before.get(name, ""), after.get(name, "")
                    )
                )
    return diffs
