"""The keys a write stores and the key rotation: every ``api_keys`` row a change adds,
the ciphertext a reused key is stored with, and the re-encryption of every stored
ciphertext (``rotate-keys``).

Shared by the plain writes (``db.repository``) and the rollouts (``db.rollouts``), so a
rollout's candidate stores its primary's and its fallback routes' keys exactly the way
an UpdateConfig does, and one rotation covers every place a ciphertext lives: the
stages' rows (primary and routes), ``api_keys``, the encryption canary, and the rare
ciphertext a rollout's candidate keeps inline (a key older than ``api_keys``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import datetime
from typing import cast

from sqlalchemy import Table, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from stageconfig_server.db.models import ApiKeyRow, ProviderConfigRow, ServiceStateRow
from stageconfig_server.db.records import ConfigWrite, StoredConfig, StoredRoute
from stageconfig_server.db.rollout_models import RolloutRow
from stageconfig_server.db.route_rows import rotate_routes
from stageconfig_server.db.rows import stored_from_write

_configs = cast(Table, ProviderConfigRow.__table__)
_keys = cast(Table, ApiKeyRow.__table__)
_state = cast(Table, ServiceStateRow.__table__)
_rollouts = cast(Table, RolloutRow.__table__)

CANARY_NAME = "encryption_canary"
"""The ``service_state`` row holding the encryption canary."""


async def key_of(
    conn: AsyncConnection, write: ConfigWrite, now: datetime
) -> tuple[int | None, str]:
    """The key id and ciphertext a write stores: a new ``api_keys`` row for a new key,
    else the referenced key's ciphertext as stored now."""
    if write.new_key:
        key_id = (
            await conn.execute(
                insert(_keys)
                .values(
                    provider_kind=write.provider_kind.value,
                    stage_type=write.stage_type.value,
                    api_key_encrypted=write.api_key_encrypted,
                    fingerprint=write.api_key_fingerprint,
                    created_at=now,
                    created_by=write.actor,
                )
                .returning(_keys.c.id)
            )
        ).scalar_one()
        return int(key_id), write.api_key_encrypted
    if write.api_key_id is None:
        return None, write.api_key_encrypted
    # A reused key: take its ciphertext as stored now, inside this transaction. The
    # caller read it before a slow provider call; a rotate-keys that ran meanwhile
    # re-encrypted it, and writing the old ciphertext back would leave a value only
    # the old secret opens.
    current = (
        await conn.execute(select(_keys.c.api_key_encrypted).where(_keys.c.id == write.api_key_id))
    ).scalar()
    return write.api_key_id, current if current is not None else write.api_key_encrypted


async def route_keys(
    conn: AsyncConnection,
    write: ConfigWrite,
    routes: Sequence[StoredRoute],
    now: datetime,
) -> tuple[StoredRoute, ...]:
    """The routes a write stores: each new key (no id) added to ``api_keys``, each
    reused key with its ciphertext as stored now (see ``key_of``)."""
    resolved = []
    for route in routes:
        route_write = replace(
            write,
            provider_kind=route.provider_kind,
            api_key_encrypted=route.api_key_encrypted,
            api_key_fingerprint=route.api_key_fingerprint,
            api_key_id=route.api_key_id,
            new_key=route.api_key_id is None,
        )
        key_id, ciphertext = await key_of(conn, route_write, now)
        resolved.append(replace(route, api_key_id=key_id, api_key_encrypted=ciphertext))
    return tuple(resolved)


async def stored_with_keys(
    conn: AsyncConnection,
    write: ConfigWrite,
    current: StoredConfig | None,
    revision: int,
    now: datetime,
) -> StoredConfig:
    """The row ``write`` leaves behind at ``revision``: its primary's and its routes'
    keys stored (``key_of``, ``route_keys``); routes None keeps ``current``'s (a change
    of the primary alone, or a rollout's candidate that sets none, keeps them)."""
    key_id, ciphertext = await key_of(conn, write, now)
    routes = write.fallbacks
    if routes is None:
        routes = current.fallbacks if current else ()
    return stored_from_write(
        write,
        ciphertext=ciphertext,
        key_id=key_id,
        revision=revision,
        now=now,
        fallbacks=await route_keys(conn, write, routes, now),
    )


async def reencrypt_all(conn: AsyncConnection, rotate: Callable[[str], str]) -> int:
    """Re-encrypt every stored ciphertext with ``rotate`` (inside the caller's write
    transaction); returns how many values were rewritten."""
    count = 0
    for table, column, pk in (
        (_configs, _configs.c.api_key_encrypted, _configs.c.stage_type),
        (_keys, _keys.c.api_key_encrypted, _keys.c.id),
        (_state, _state.c.value, _state.c.name),
    ):
        query = select(pk, column)
        if table is _state:
            query = query.where(_state.c.name == CANARY_NAME)
        for key, value in (await conn.execute(query)).all():
            await conn.execute(update(table).where(pk == key).values({column.name: rotate(value)}))
            count += 1
    count += await _rotate_route_keys(conn, rotate)
    count += await _rotate_candidates(conn, rotate)
    return count


async def _rotate_route_keys(conn: AsyncConnection, rotate: Callable[[str], str]) -> int:
    """Re-encrypt the fallback routes' keys, which live inside the rows' JSON."""
    count = 0
    rows = (await conn.execute(select(_configs.c.stage_type, _configs.c.fallbacks))).all()
    for stage, routes in rows:
        if not routes:
            continue
        await conn.execute(
            update(_configs)
            .where(_configs.c.stage_type == stage)
            .values(fallbacks=rotate_routes(routes, rotate))
        )
        count += sum(1 for route in routes if route.get("api_key_encrypted"))
    return count


async def _rotate_candidates(conn: AsyncConnection, rotate: Callable[[str], str]) -> int:
    """Re-encrypt the ciphertexts a rollout's candidate keeps inline: only a primary key
    without an ``api_keys`` row has one (every other key is referenced by id, and
    rotated in ``api_keys``); a route's inline ciphertext is rotated too, defensively."""
    count = 0
    rows = (await conn.execute(select(_rollouts.c.id, _rollouts.c.candidate))).all()
    for rollout_id, candidate in rows:
        inline = 1 if candidate.get("api_key_encrypted") else 0
        routes = candidate.get("fallbacks") or []
        inline += sum(1 for route in routes if route.get("api_key_encrypted"))
        if not inline:
            continue
        rotated = {**candidate, "fallbacks": rotate_routes(routes, rotate)}
        if candidate.get("api_key_encrypted"):
            rotated["api_key_encrypted"] = rotate(candidate["api_key_encrypted"])
        await conn.execute(
            update(_rollouts).where(_rollouts.c.id == rollout_id).values(candidate=rotated)
        )
        count += inline
    return count


__all__ = ["CANARY_NAME", "key_of", "reencrypt_all", "route_keys", "stored_with_keys"]
