"""Fallback routes in an update (issue 16): check, resolve, verify, settle.

An UpdateConfig with ``fallbacks`` sets a stage's whole ordered route list. Each route
goes the primary's way, named ``fallbacks[i].field`` in every refusal:

    check     (no reads) the count (≤ ``MAX_FALLBACKS``), the allowed matrix, the key's
              form, the model's form, the options, the fingerprint's form
    resolve   the key: the one given (new, added to ``api_keys`` at the commit), the
              stored route picked by ``api_key_fingerprint``, the stored route at the
              same position with the same provider, else the provider's newest saved
              key; options given, else the kept route's, else the provider's defaults
    settle    the provider's verdict: a rejected key refuses the whole update
              (KeyRejected, nothing written); an unreachable provider stores the route
              with the verdict's status (ERROR) and its kept or requested model; a
              listed verdict picks the model (requested, kept, else the first)

Then ``check_duplicates`` refuses a route equal (provider, key fingerprint, model) to the
primary or to an earlier route. For VOICE, SONG and CLIP, which allow one provider, the
routes are further keys of that provider: a key pool.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import datetime

from stageconfig_server import update_messages as messages
from stageconfig_server.crypto import KeyCipher, fingerprint
from stageconfig_server.db.records import ConfigWrite, StoredRoute
from stageconfig_server.domain import (
    MAX_FALLBACKS,
    ConfigStatus,
    ProviderKind,
    Route,
    StageConfig,
    StageType,
)
from stageconfig_server.errors import InvalidArgument, KeyRejected
from stageconfig_server.store import ConfigStore
from stageconfig_server.validation import (
    check_allowed,
    check_api_key,
    check_model,
    check_options,
)
from stageconfig_server.verification import ProviderCheck
from stageconfig_server.view import ConfigView, stage_config

_FINGERPRINT = re.compile(r"^[0-9a-f]{1,16}$")


@dataclass(frozen=True, slots=True)
class RouteRequest:
    """One fallback route as an admin sets it (RouteUpdate)."""

    provider_kind: ProviderKind
    api_key: str | None = None
    model: str | None = None
    options: Mapping[str, str] | None = None
    api_key_fingerprint: str = ""

    def __repr__(self) -> str:  # the key never reaches a log through repr
        key = "<hidden>" if self.api_key is not None else None
        return (
            f"RouteRequest(provider_kind={self.provider_kind}, api_key={key}, "
            f"model={self.model!r}, options={self.options!r}, "
            f"api_key_fingerprint={self.api_key_fingerprint!r})"
        )


@dataclass(frozen=True, slots=True)
class PlannedRoute:
    """A checked route with its key resolved, before the provider's verdict."""

    index: int
    provider: ProviderKind
    plaintext: str = field(repr=False)
    ciphertext: str = field(repr=False)  # "" for a new key: encrypted at the commit
    key_id: int | None  # None: a new key
    requested_model: str | None
    options: Mapping[str, str]
    kept: Route | None = None  # the stored route this one continues (model, cache)


@dataclass(frozen=True, slots=True)
class SettledRoute:
    """A verified route: what the write stores and what workers get."""

    stored: StoredRoute
    route: Route


@contextmanager
def _named(index: int) -> Iterator[None]:
    """Re-raise a check's InvalidArgument under ``fallbacks[index].``."""
    try:
        yield
    except InvalidArgument as error:
        raise InvalidArgument(f"fallbacks[{index}].{error.field}", error.description) from None


def check_route_requests(stage: StageType, requests: Sequence[RouteRequest]) -> None:
    """Every check that needs no read; InvalidArgument naming ``fallbacks[i].field``."""
    if len(requests) > MAX_FALLBACKS:
        raise InvalidArgument("fallbacks", f"at most {MAX_FALLBACKS} routes, got {len(requests)}")
    for index, request in enumerate(requests):
        with _named(index):
            check_allowed(stage, request.provider_kind)
            if request.model is not None:
                check_model(request.model)
            if request.api_key is not None:
                check_api_key(request.api_key)
            if request.options:
                check_options(request.provider_kind, request.options)
            fp = request.api_key_fingerprint
            if fp and not _FINGERPRINT.match(fp):
                raise InvalidArgument("api_key_fingerprint", "must be 1 to 16 lowercase hex digits")
            if fp and request.api_key is not None:
                raise InvalidArgument(
                    "api_key_fingerprint", "names a stored key: do not send api_key with it"
                )


def kept_routes(view: ConfigView, stage: StageType) -> list[tuple[Route, StoredRoute]]:
    """The stage's stored routes, plaintext and stored form side by side."""
    held = view.held(stage)
    if held is None:
        return []
    return list(zip(held.config.fallbacks, held.routes, strict=True))


async def plan_routes(
    view: ConfigView,
    store: ConfigStore,
    cipher: KeyCipher,
    stage: StageType,
    requests: Sequence[RouteRequest],
) -> tuple[PlannedRoute, ...]:
    """Resolve each checked request's key, options and the stored route it continues."""
    stored = kept_routes(view, stage)
    planned = []
    for index, request in enumerate(requests):
        provider = request.provider_kind
        kept: tuple[Route, StoredRoute] | None = None
        if request.api_key_fingerprint:
            kept = next(
                (
                    pair
                    for pair in stored
                    if pair[0].provider_kind == provider
                    and pair[0].api_key_fingerprint == request.api_key_fingerprint
                ),
                None,
            )
            if kept is None:
                raise InvalidArgument(
                    f"fallbacks[{index}].api_key_fingerprint",
                    f"no stored fallback key of stage {stage.value} for {provider.value} "
                    "has this fingerprint",
                )
        elif index < len(stored) and stored[index][0].provider_kind == provider:
            kept = stored[index]
        if request.api_key is not None:
            plaintext, ciphertext, key_id = request.api_key, "", None
        elif kept is not None:
            plaintext, ciphertext, key_id = (
                kept[0].api_key,
                kept[1].api_key_encrypted,
                kept[1].api_key_id,
            )
        else:
            newest = await store.newest_key(provider)
            if newest is None:
                raise InvalidArgument(
                    f"fallbacks[{index}].api_key",
                    f"is required: no key for {provider.value} has been saved before",
                )
            ciphertext, key_id = newest.api_key_encrypted, newest.id
            plaintext = cipher.decrypt_key(ciphertext)
        with _named(index):
            if request.options:
                options = check_options(provider, request.options)
            elif kept is not None:
                options = dict(kept[0].options)
            else:
                options = check_options(provider, {})
        planned.append(
            PlannedRoute(
                index=index,
                provider=provider,
                plaintext=plaintext,
                ciphertext=ciphertext,
                key_id=key_id,
                requested_model=request.model,
                options=options,
                kept=kept[0] if kept else None,
            )
        )
    return tuple(planned)


def restore_routes(
    view: ConfigView, routes: Sequence[StoredRoute], revision: int
) -> tuple[PlannedRoute, ...]:
    """A logged state's routes planned again (rollback): each key by its ``api_keys``
    id, its model requested, its options as they were."""
    planned = []
    for index, route in enumerate(routes):
        if not route.api_key_encrypted or route.api_key_id is None:
            raise InvalidArgument(
                f"fallbacks[{index}].api_key",
                f"the key of revision {revision}'s route is no longer stored",
            )
        planned.append(
            PlannedRoute(
                index=index,
                provider=route.provider_kind,
                plaintext=view.plaintext_of_key(route.api_key_encrypted, route.api_key_id),
                ciphertext=route.api_key_encrypted,
                key_id=route.api_key_id,
                requested_model=route.model,
                options=dict(route.options),
            )
        )
    return tuple(planned)


async def settle_routes(
    planned: Sequence[PlannedRoute], check: ProviderCheck, now: datetime
) -> tuple[SettledRoute, ...]:
    """Ask each route's provider (concurrently) and settle model and status; KeyRejected
    when any provider refuses its key, InvalidArgument for a model it does not offer."""
    verdicts = await asyncio.gather(
        *(check.verdict(p.provider, p.plaintext, p.options) for p in planned)
    )
    settled = []
    for route, verdict in zip(planned, verdicts, strict=True):
        where = f"fallbacks[{route.index}]"
        if verdict.status is ConfigStatus.INVALID:
            raise KeyRejected(
                f"{where} ({route.provider.value}): {messages.key_rejected(verdict)}",
                verdict.cause.value if verdict.cause else "AUTH",
            )
        kept = route.kept
        models = verdict.models
        if models is None:
            model = route.requested_model or (kept.model if kept else None)
            if model is None:
                raise InvalidArgument(f"{where}.model", messages.model_required(verdict))
            cache = kept.models_cache if kept else ()
            reason = messages.stored_unverified(verdict, allowed=False)
        else:
            cache, reason = models, verdict.reason
            if route.requested_model is None:
                model = kept.model if kept and kept.model in models else models[0]
            elif route.requested_model in models:
                model = route.requested_model
            else:
                offered = ", ".join(models[:5])
                raise InvalidArgument(
                    f"{where}.model",
                    f"{route.requested_model} is not offered by {route.provider.value} "
                    f"for this key; available: {offered}",
                )
        key_fp = fingerprint(route.plaintext)
        settled.append(
            SettledRoute(
                stored=StoredRoute(
                    provider_kind=route.provider,
                    api_key_encrypted=route.ciphertext,
                    api_key_id=route.key_id,
                    api_key_fingerprint=key_fp,
                    model=model,
                    options=dict(route.options),
                    status=verdict.status,
                    status_cause=verdict.cause,
                    status_reason=reason,
                    models_cache=tuple(cache),
                ),
                route=Route(
                    provider_kind=route.provider,
                    api_key=route.plaintext,
                    model=model,
                    options=dict(route.options),
                    status=verdict.status,
                    status_reason=reason,
                    status_cause=verdict.cause,
                    api_key_fingerprint=key_fp,
                    models_cache=tuple(cache),
                ),
            )
        )
    return tuple(settled)


def check_duplicates(primary: tuple[ProviderKind, str, str], routes: Sequence[Route]) -> None:
    """Refuse a route equal (provider, key fingerprint, model) to the primary or to an
    earlier route: it could only fail the same way again."""
    seen = {primary: "the primary"}
    for index, route in enumerate(routes):
        identity = (route.provider_kind, route.api_key_fingerprint, route.model)
        if identity in seen:
            raise InvalidArgument(
                f"fallbacks[{index}]",
                f"duplicates {seen[identity]} (same provider, key and model)",
            )
        seen[identity] = f"fallbacks[{index}]"


def same_routes(routes: Sequence[Route], current: Sequence[Route]) -> bool:
    """Whether ``routes`` store exactly the current provider, key, model and options of
    every route, in order."""
    return len(routes) == len(current) and all(
        new.provider_kind == old.provider_kind
        and new.api_key == old.api_key
        and new.model == old.model
        and dict(new.options) == dict(old.options)
        for new, old in zip(routes, current, strict=True)
    )


def final_routes(
    routes: Sequence[SettledRoute] | None, current: StageConfig | None
) -> Sequence[Route]:
    """The routes a change leaves the stage with: the settled ones, else the stored."""
    if routes is not None:
        return [r.route for r in routes]
    return current.fallbacks if current else ()


def with_routes(
    write: ConfigWrite, routes: Sequence[SettledRoute] | None, cipher: KeyCipher
) -> ConfigWrite:
    """``write`` storing ``routes`` (None: it keeps the stored ones), each new key
    encrypted once, here."""
    if routes is None:
        return write
    stored = tuple(
        r.stored
        if r.stored.api_key_encrypted
        else replace(r.stored, api_key_encrypted=cipher.encrypt_key(r.route.api_key))
        for r in routes
    )
    return replace(write, fallbacks=stored)


def preview(
    view: ConfigView, write: ConfigWrite, plaintext: str, routes: Sequence[SettledRoute] | None
) -> StageConfig:
    """What ``write`` would store (validate_only), with the kept routes when it leaves
    them as they are (``routes`` None)."""
    held = view.held(write.stage_type)
    current = held.config if held else None
    if routes is None:
        write = replace(write, fallbacks=held.routes if held else ())
        keys = [r.api_key for r in current.fallbacks] if current else []
    else:
        keys = [r.route.api_key for r in routes]
    revision, updated_at = (current.revision, current.updated_at) if current else (0, None)
    return stage_config(write, plaintext, revision=revision, updated_at=updated_at, route_keys=keys)
