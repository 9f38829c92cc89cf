"""``run_with_fallback(config, call)``: one call served by the first route of a stage
that can serve it — the primary, then each fallback in order.

A failure the route is to blame for (``_route_failures.classify``: rejected key, quota
or credits, rate limit, 5xx, timeout, connection) moves on to the next route; anything
else (the caller's 400, a bug) is raised at once, as it is. A route whose breaker is
open (``_breaker``) is skipped without being called, so while the primary is down every
call goes straight to the first healthy route. When no route serves, one
``AllRoutesFailed`` names each route's failure — no key, no provider answer, and no
chained provider exception (its text may echo the key).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TypeVar

from stageconfig._breaker import (
    BreakerRegistry,
    BreakerSettings,
    default_registry,
    route_label,
)
from stageconfig._route_failures import RouteFailure, classify
from stageconfig._types import Route, StageConfig, StatusCause
from stageconfig.errors import AllRoutesFailed

T = TypeVar("T")

log = logging.getLogger("stageconfig.routing")

DEFAULT_BREAKER_SETTINGS = BreakerSettings()
"""3 consecutive failures open a breaker for 5 s, doubling up to 300 s."""


def run_with_fallback(
    config: StageConfig,
    call: Callable[[Route], T],
    *,
    settings: BreakerSettings | None = None,
    breakers: BreakerRegistry | None = None,
) -> T:
    """``call(route)`` with the primary route, then each fallback while the route is to
    blame; the first answer is returned.

    ``settings``: when a route's breaker opens (default ``DEFAULT_BREAKER_SETTINGS``);
    ``breakers``: whose breakers and counters (default: this process's, which the
    ConfigClient reports). Raises what ``call`` raised when it is not the route's fault,
    else ``AllRoutesFailed`` once every route failed or was skipped.
    """
    settings = settings if settings is not None else DEFAULT_BREAKER_SETTINGS
    registry = breakers if breakers is not None else default_registry()
    stage = config.stage_type
    routes = config.routes()
    failures: list[tuple[str, RouteFailure]] = []
    for position, route in enumerate(routes):
        label = route_label(route.index, route.provider_kind)
        last = position == len(routes) - 1
        skip = registry.admit(stage, route)
        if skip is not None:
            cause = skip.failure.cause if skip.failure else StatusCause.UNSPECIFIED
            failures.append((label, RouteFailure(cause, "breaker open")))
            if not last:
                registry.failed_over(stage, route)
            continue
        try:
            result = call(route)
        except Exception as exc:
            failure = classify(exc)
            if failure is None:
                registry.release(stage, route)
                raise
            registry.failed(stage, route, failure, settings)
            failures.append((label, failure))
            if not last:
                registry.failed_over(stage, route)
                following = routes[position + 1]
                next_label = route_label(following.index, following.provider_kind)
                log.warning("%s %s failed (%s); trying %s", stage, label, failure, next_label)
            continue
        except BaseException:
            registry.release(stage, route)
            raise
        registry.succeeded(stage, route)
        return result
    summary = "; ".join(f"{label}: {failure}" for label, failure in failures)
    raise AllRoutesFailed(f"every route of {stage} failed: {summary}", tuple(failures))
