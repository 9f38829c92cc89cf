"""Fallback routes on the web page (issue 16): the stage form's *Fallback routes* box
(one route per line, ``PROVIDER[:MODEL][@FINGERPRINT][,NAME=VALUE…]``, as
``stageconfigctl set --fallback`` takes them) and its box of new keys (one per line, in
the same order; an empty line keeps the stored key).

The box is filled from the stored routes with each key named by its fingerprint, so a
route keeps its key wherever it is moved; emptying the box removes every route. A new
key is never rendered back.
"""

from __future__ import annotations

from stageconfig.admin import RouteSpec, StageView, parse_route_spec, route_spec_text


def routes_text(view: StageView) -> str:
    """The box's content for the stored routes."""
    return "\n".join(route_spec_text(route) for route in view.routes)


def posted_routes(
    text: str, keys_text: str, had_routes: bool
) -> tuple[list[RouteSpec] | None, bool]:
    """What a posted form asks for: the routes to send (None: keep the stored list) and
    whether to clear them. ValueError says what is malformed (the line named)."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    keys = [key.strip() for key in keys_text.splitlines()]
    if not lines:
        if any(keys):
            raise ValueError("new fallback keys were typed, but no fallback route is listed")
        return None, had_routes
    if len(keys) > len(lines) and any(keys[len(lines) :]):
        raise ValueError(f"{len(keys)} fallback keys for {len(lines)} routes")
    routes = []
    for number, line in enumerate(lines, start=1):
        try:
            spec = parse_route_spec(line)
        except ValueError as error:
            raise ValueError(f"fallback route {number}: {error}") from None
        key = keys[number - 1] if number <= len(keys) else ""
        # A typed key replaces the stored one the line names by fingerprint.
        fingerprint = "" if key else spec.api_key_fingerprint
        routes.append(RouteSpec(spec.provider, key or None, spec.model, spec.options, fingerprint))
    return routes, False
