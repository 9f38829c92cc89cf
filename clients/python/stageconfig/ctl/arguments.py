"""The command line of ``stageconfigctl``: global options, one sub-command per admin
task, and the argument types that turn a typo into a usage error (exit 2).

A usage error raises ``UsageError`` (``CtlParser.error``) instead of exiting, so that
``main`` reports it like every other failure — a JSON object under ``--json``.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable
from typing import NoReturn

from stageconfig import ProviderKind, StageType
from stageconfig.ctl.commands import (
    cmd_get,
    cmd_history,
    cmd_models,
    cmd_refresh,
    cmd_rollback,
    cmd_set,
    cmd_status,
    cmd_watch,
)
from stageconfig.ctl.exits import PROG, TOKEN_ENV, Exit, UsageError
from stageconfig.ctl.fleet import cmd_fleet, cmd_watchers, parse_window
from stageconfig.ctl.routes import add_fallback_flags
from stageconfig.ctl.server_flags import add_server_flags
from stageconfig_contract import __version__


class CtlParser(argparse.ArgumentParser):
    """An ArgumentParser whose usage errors raise ``UsageError`` (with the command's
    usage line) rather than print and exit; sub-command parsers are of this class too."""

    def error(self, message: str) -> NoReturn:
        """Raise the usage error for ``main`` to report (exit 2)."""
        raise UsageError(message, usage=self.format_usage().strip())


def _stage(value: str) -> StageType:
    try:
        return StageType(value.upper())
    except ValueError:
        names = ", ".join(s.value for s in StageType)
        raise argparse.ArgumentTypeError(f"unknown stage {value!r} (one of {names})") from None


def _provider(value: str) -> ProviderKind:
    try:
        return ProviderKind(value.upper().replace("-", "_"))
    except ValueError:
        names = ", ".join(p.value for p in ProviderKind)
        raise argparse.ArgumentTypeError(f"unknown provider {value!r} (one of {names})") from None


def _non_negative(value: str) -> int:
    number = int(value)
    if number < 0:
        raise argparse.ArgumentTypeError("must not be negative")
    return number


def _positive_float(value: str) -> float:
    number = float(value)
    if number <= 0:
        raise argparse.ArgumentTypeError("must be positive")
    return number


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``stageconfigctl``."""
    parser = CtlParser(
        prog=PROG,
        description=f"{PROG}: the admin command line of stageconfig, built on AdminClient.",
        epilog="exit codes: 0 ok, 1 refused by the server, 2 usage, 3 unavailable, "
        "4 conflict (stale revision), 5 not authenticated/allowed, 130 interrupted",
    )
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    add_server_flags(parser)
    parser.add_argument(
        "--token",
        default=os.environ.get(TOKEN_ENV) or None,
        help=f"admin bearer token (env {TOKEN_ENV}, preferred: argv is visible to others)",
    )
    parser.add_argument(
        "--timeout",
        dest="call_timeout",
        type=_positive_float,
        default=30.0,
        metavar="SECONDS",
        help="deadline of each call (default 30)",
    )
    json_help = "machine-readable JSON output"
    parser.add_argument("--json", action="store_true", help=json_help)
    # ``--json`` is accepted after the command too; SUPPRESS keeps a global one.
    common = CtlParser(add_help=False)
    common.add_argument("--json", action="store_true", default=argparse.SUPPRESS, help=json_help)

    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, handler: Callable[..., Exit], help_: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, parents=[common], help=help_, description=help_)
        sub.set_defaults(handler=handler)
        return sub

    command("status", cmd_status, "a table of the four stages")

    get = command("get", cmd_get, "one stage in full (key masked)")
    get.add_argument("stage", type=_stage, metavar="STAGE")

    set_ = command("set", cmd_set, "change a stage's provider, key, model or options")
    set_.add_argument("stage", type=_stage, metavar="STAGE")
    set_.add_argument("--provider", type=_provider, required=True)
    set_.add_argument("--model", help="default: keep the stored one if offered, else the first")
    set_.add_argument(
        "--option", action="append", metavar="NAME=VALUE", help="provider option (repeatable)"
    )
    set_.add_argument(
        "--expected-revision",
        type=_non_negative,
        metavar="N",
        help="write only if the stage is still at revision N (0: not stored yet)",
    )
    set_.add_argument(
        "--validate-only", action="store_true", help="check everything, write nothing"
    )
    set_.add_argument("--comment", default="", help="kept in the history")
    set_.add_argument(
        "--allow-unverified",
        action="store_true",
        help="store a key the provider could not verify even over a working config",
    )
    keys = set_.add_mutually_exclusive_group()
    keys.add_argument("--prompt-key", action="store_true", help="ask for a new key (no echo)")
    keys.add_argument(
        "--key-stdin", action="store_true", help="read a new key from the first line of stdin"
    )
    keys.add_argument(
        "--api-key-insecure-argv",
        metavar="KEY",
        help="take the key from the command line (visible in ps and shell history)",
    )
    add_fallback_flags(set_)

    models = command("models", cmd_models, "the stage's model list")
    models.add_argument("stage", type=_stage, metavar="STAGE")
    models.add_argument("--refresh", action="store_true", help="ask the provider now")

    refresh = command("refresh", cmd_refresh, "run the model sync now")
    refresh.add_argument("stage", type=_stage, nargs="?", metavar="STAGE")

    history = command("history", cmd_history, "the revision log, newest first")
    history.add_argument("stage", type=_stage, nargs="?", metavar="STAGE")
    history.add_argument(
        "--limit", type=_non_negative, default=20, help="entries (default 20; 0: all)"
    )
    history.add_argument(
        "--wide",
        action="store_true",
        help="every change in full (default: cut to the terminal's width)",
    )

    rollback = command("rollback", cmd_rollback, "restore an earlier revision as a new one")
    rollback.add_argument("stage", type=_stage, metavar="STAGE")
    rollback.add_argument("revision", type=_non_negative, metavar="REVISION")
    rollback.add_argument("--expected-revision", type=_non_negative, metavar="N")

    watch = command("watch", cmd_watch, "stream changes live (Ctrl-C to stop)")
    watch.add_argument("stages", type=_stage, nargs="*", metavar="STAGE")
    watch.add_argument("--timeout", type=_positive_float, metavar="SECONDS", help="stop after")
    watch.add_argument("--heartbeats", action="store_true", help="print heartbeats too")
    watch.add_argument("--client-id", default="", help="name shown by `watchers`")

    command(
        "watchers",
        cmd_watchers,
        "connected WatchConfig streams: revision sent, revision applied, NACK, last report",
    )

    fleet = command(
        "fleet",
        cmd_fleet,
        "what the fleet runs: per stage the revisions in use, NACKs, failure rates, silent clients",
    )
    fleet.add_argument("stage", type=_stage, nargs="?", metavar="STAGE")
    fleet.add_argument(
        "--window",
        type=parse_window,
        metavar="WINDOW",
        help="count task outcomes over this window: 90s, 15m, 1h, 1d (default 15m)",
    )
    return parser
