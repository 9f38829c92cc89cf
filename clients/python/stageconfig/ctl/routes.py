"""Fallback routes in ``stageconfigctl`` (issue 16): the ``set`` flags that set them,
the lines ``status`` and ``get`` add for them, and the route health line of ``fleet``.

    stageconfigctl set POEM --provider gemini --model gemini-2.5-pro \\
        --fallback openai:gpt-4o-mini \\
        --fallback 'yandex_gpt:yandexgpt/latest,folder_id=b1g…' \\
        --fallback-keys-stdin < keys.txt      # one key per --fallback; empty line keeps
    stageconfigctl set VOICE --provider speechkit --fallback speechkit@1a2b3c4d  # a stored key
    stageconfigctl set POEM --provider gemini --clear-fallbacks

A ``--fallback`` is ``PROVIDER[:MODEL][@FINGERPRINT][,NAME=VALUE…]``: the model (omitted:
the stored route's if still offered, else the first), a stored key of the stage picked
by its fingerprint (reordering a key pool), provider options. Keys are never taken
from the command line: ``--fallback-keys-stdin`` reads one line per ``--fallback``
(after the primary's line when ``--key-stdin`` is given too), ``--prompt-fallback-keys``
asks for each without echo; an empty answer keeps the route's stored key.
"""

from __future__ import annotations

import argparse
import getpass
from collections.abc import Iterable, Sequence
from typing import TextIO

from stageconfig import ProviderKind, StageType
from stageconfig.admin import RouteSpec, RouteView, StageFleetStatus, StageView, parse_route_spec
from stageconfig.ctl.exits import UsageError


def add_fallback_flags(parser: argparse.ArgumentParser) -> None:
    """The ``set`` flags of fallback routes."""
    parser.add_argument(
        "--fallback",
        action="append",
        metavar="PROVIDER[:MODEL][@FINGERPRINT][,NAME=VALUE]",
        help="a fallback route, in order (repeatable; sets the whole list)",
    )
    parser.add_argument(
        "--clear-fallbacks", action="store_true", help="remove every stored fallback route"
    )
    keys = parser.add_mutually_exclusive_group()
    keys.add_argument(
        "--fallback-keys-stdin",
        action="store_true",
        help="read one key per --fallback from stdin (empty line: keep the stored key)",
    )
    keys.add_argument(
        "--prompt-fallback-keys",
        action="store_true",
        help="ask for each --fallback's key without echo (empty: keep the stored key)",
    )


def parse_route(text: str) -> RouteSpec:
    """One ``--fallback`` value as a RouteSpec (without a key)."""
    try:
        return parse_route_spec(text)
    except ValueError as error:
        raise UsageError(f"--fallback: {error}") from None


def fallback_specs(args: argparse.Namespace, stdin: TextIO) -> list[RouteSpec] | None:
    """The routes ``set`` sends (None: the stored list stays), with the keys read."""
    routes = [parse_route(text) for text in args.fallback or ()]
    if args.clear_fallbacks and routes:
        raise UsageError("--clear-fallbacks and --fallback exclude each other")
    if (args.fallback_keys_stdin or args.prompt_fallback_keys) and not routes:
        raise UsageError("fallback keys were asked for, but no --fallback was given")
    if not routes:
        return None
    keyed = []
    for index, route in enumerate(routes):
        key = _read_route_key(args, stdin, index, route)
        if key and route.api_key_fingerprint:
            raise UsageError(
                f"--fallback {index + 1}: a new key and @FINGERPRINT exclude each other"
            )
        keyed.append(
            RouteSpec(
                route.provider, key or None, route.model, route.options, route.api_key_fingerprint
            )
        )
    return keyed


def _read_route_key(args: argparse.Namespace, stdin: TextIO, index: int, route: RouteSpec) -> str:
    if args.fallback_keys_stdin:
        return stdin.readline().rstrip("\r\n")
    if args.prompt_fallback_keys:
        provider = ProviderKind(route.provider).value
        prompt = f"API key for fallback {index + 1} ({provider}), empty keeps the stored one: "
        return getpass.getpass(prompt).rstrip("\r\n")
    return ""


def route_lines(views: Iterable[StageView]) -> list[str]:
    """``status``'s lines for the stages with fallback routes, one per route."""
    return [line for view in views for line in stage_route_lines(view.stage_type, view.routes)]


def stage_route_lines(stage: StageType, routes: Iterable[RouteView]) -> list[str]:
    """One line per fallback route of ``stage`` (``status``, and ``set``'s answer)."""
    lines = []
    for index, route in enumerate(routes):
        reason = f" ({route.status_reason})" if route.status_reason else ""
        lines.append(
            f"{stage.value} fallback {index + 1}: {route.provider} {route.model} "
            f"{route.status.value} key {route.api_key}{reason}"
        )
    return lines


def view_route_lines(view: StageView) -> list[tuple[str, str]]:
    """``get``'s ``name  value`` lines of the stage's routes."""
    return [
        (
            f"fallback {index + 1}",
            f"{route.provider} {route.model} {route.status.value} key {route.api_key} "
            f"(fingerprint {route.api_key_fingerprint or '-'})"
            + (f" options {_options(route.options.items())}" if route.options else "")
            + (f": {route.status_reason}" if route.status_reason else ""),
        )
        for index, route in enumerate(view.routes)
    ]


def _options(items: Iterable[tuple[str, str]]) -> str:
    return ",".join(f"{k}={v}" for k, v in sorted(items))


def fleet_route_lines(stage: StageFleetStatus) -> Sequence[str]:
    """``fleet``'s lines of a stage's routes: the health line and one line per route."""
    if not stage.routes:
        return []
    lines = [f"  {stage.route_health}"]
    for route in stage.routes:
        name = "primary" if route.route_index == 0 else f"fallback {route.route_index}"
        cause = route.failure_cause.value if route.failure_cause.value != "UNSPECIFIED" else "-"
        lines.append(
            f"    {name} {route.provider} key {route.api_key_fingerprint or '-'}: "
            f"{route.clients_open}/{route.clients} open, {route.succeeded} ok, "
            f"{route.failed} failed, {route.failovers} failovers, cause {cause}"
        )
    return lines
