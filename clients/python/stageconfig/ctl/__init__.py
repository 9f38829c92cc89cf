"""``stageconfigctl``: the admin command line of stageconfig, built on ``AdminClient``.

    stageconfigctl status                         the four stages at a glance
    stageconfigctl get POEM                       one stage in full
    stageconfigctl set POEM --provider OPENAI --prompt-key [--model gpt-4o] …
    stageconfigctl set POEM … --fallback openai:gpt-4o-mini --fallback-keys-stdin  (routes)
    stageconfigctl models POEM [--refresh]        the cached (or fresh) model list
    stageconfigctl refresh [STAGE]                run the model sync now
    stageconfigctl history [STAGE] [--limit N]    the revision log, newest first (--wide)
    stageconfigctl rollback POEM 12               restore revision 12 as a new revision
    stageconfigctl watch [STAGE…] [--timeout S]   live changes, one line each
    stageconfigctl watchers                       connected streams: sent, applied, NACK
    stageconfigctl fleet [STAGE] [--window 15m]   revisions in use, NACKs, failure rates
    stageconfigctl rollout start POEM --model M --percent 25   a new config for a cohort
    stageconfigctl rollout status|promote|abort [STAGE]       (see docs/rollouts.md)

Keys are only ever shown masked. ``set`` keeps the stored key unless one is given, and
reads a new one without echo (``--prompt-key``) or from stdin (``--key-stdin``); it takes
a key from the command line only with ``--api-key-insecure-argv``.

``--json`` makes every failure, usage errors included, one JSON object on stderr;
``--version`` prints the one version of stageconfig.

Exit codes: 0 done; 1 the server refused (invalid argument, not found, key rejected…);
2 usage error; 3 server unreachable or timed out; 4 conflict (stale
``--expected-revision``: reload and retry); 5 not authenticated or not allowed;
130 interrupted.

Modules: ``arguments`` (the parser), ``commands`` (one function per command),
``fleet`` (``fleet`` and ``watchers``: what workers applied, refused and ran),
``rollout`` (``rollout start|status|promote|abort`` and the rollout lines of ``status``),
``routes`` (the fallback-route flags of ``set`` and the route lines of ``status``,
``get`` and ``fleet``),
``output`` (tables, lines, JSON), ``exits`` (exit codes and error lines),
``server_flags`` (--target and the TLS flags, shared with the web page). Only public
names of ``stageconfig`` are used.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence

from stageconfig.admin import AdminClient
from stageconfig.ctl.arguments import build_parser
from stageconfig.ctl.exits import PROG, Exit, UsageError, error_details, error_exit, fail
from stageconfig.ctl.output import safe_output
from stageconfig.ctl.server_flags import tls_from_flags
from stageconfig.errors import RPCError


def _client(args: argparse.Namespace) -> AdminClient:
    try:
        tls = tls_from_flags(args)
    except ValueError as error:
        raise UsageError(str(error)) from error
    return AdminClient(args.target, token=args.token, tls=tls, timeout=args.call_timeout)


def _warnings_to_stderr() -> None:
    # What AdminClient leaves out of an answer from a newer server, one line each.
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(f"{PROG}: warning: %(message)s"))
    library = logging.getLogger("stageconfig")
    library.addHandler(handler)
    library.setLevel(logging.WARNING)


def _asks_for_json(argv: Sequence[str]) -> bool:
    # Before parsing, so that a usage error is reported as JSON too; what follows "--"
    # is an operand, not an option.
    options = argv[: list(argv).index("--")] if "--" in argv else argv
    return "--json" in options


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``stageconfigctl`` console script; returns the exit code
    (``--help`` and ``--version`` exit 0 through SystemExit, as argparse does)."""
    arguments = list(sys.argv[1:] if argv is None else argv)
    try:
        args = build_parser().parse_args(arguments)
    except UsageError as error:
        as_json = _asks_for_json(arguments)
        if error.usage and not as_json:
            sys.stderr.write(error.usage + "\n")
        return int(fail(Exit.USAGE, str(error), as_json))
    as_json = bool(args.json)
    _warnings_to_stderr()
    try:
        with _client(args) as client:
            result: Exit = args.handler(client, args, safe_output(sys.stdout))
            return int(result)
    except UsageError as error:
        return int(fail(Exit.USAGE, str(error), as_json))
    except RPCError as error:
        code, message = error_exit(error, args.target)
        return int(fail(code, message, as_json, error_details(error)))
    except KeyboardInterrupt:
        return int(Exit.INTERRUPTED)
    except BrokenPipeError:
        # `stageconfigctl history | head`: the reader left, which is not an error. Point
        # stdout at /dev/null so the interpreter's final flush does not complain.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return int(Exit.OK)


__all__ = ["Exit", "build_parser", "main"]
