"""The commands of ``stageconfigctl``: each takes the ``AdminClient``, the parsed
arguments and the output stream, calls the server and shows the answer (a table or
lines, or JSON under ``--json``)."""

from __future__ import annotations

import argparse
import getpass
import os
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import TextIO

from stageconfig.admin import AdminClient, HeartbeatEvent, HistoryEntry
from stageconfig.ctl.exits import PROG, Exit, UsageError
from stageconfig.ctl.output import (
    config_line,
    event_line,
    jsonable,
    print_json,
    short,
    show_view,
    status_row,
    table,
    terminal_width,
    when,
)
from stageconfig.ctl.rollout import status_lines
from stageconfig.ctl.routes import fallback_specs, route_lines, stage_route_lines, view_route_lines


def cmd_status(client: AdminClient, args: argparse.Namespace, out: TextIO) -> Exit:
    """The four stages: provider, model, status, revision, cache age, key, reason."""
    overview = client.list_configs()
    if args.json:
        print_json(overview, out)
        return Exit.OK
    now = datetime.now(UTC)
    table(
        ["STAGE", "PROVIDER", "MODEL", "STATUS", "REVISION", "CACHE AGE", "KEY", "REASON"],
        (status_row(view, now) for view in overview.stages),
        out,
    )
    out.write(f"head revision {overview.head_revision}\n")
    for line in route_lines(overview.stages):  # each fallback route, in order
        out.write(line + "\n")
    for line in status_lines(overview.stages):  # each running rollout, with both sides
        out.write(line + "\n")
    return Exit.OK


def cmd_get(client: AdminClient, args: argparse.Namespace, out: TextIO) -> Exit:
    """One stage in full (key masked)."""
    view = client.list_configs().stage(args.stage)
    if args.json:
        print_json(view, out)
    else:
        show_view(view, out, view_route_lines(view))
    return Exit.OK


def _read_key(args: argparse.Namespace, stdin: TextIO) -> str | None:
    if args.api_key_insecure_argv is not None:
        sys.stderr.write(
            f"{PROG}: warning: a key on the command line is visible in the process list and "
            "the shell history; prefer --prompt-key or --key-stdin\n"
        )
        return str(args.api_key_insecure_argv)
    if not (args.prompt_key or args.key_stdin):
        return None
    prompt = f"API key for {args.stage.value} ({args.provider.value}): "
    # getpass reads from the terminal without echo; a pipe is read as is.
    if args.prompt_key and not _has_terminal():
        raise UsageError(
            "--prompt-key needs a terminal to read the key without echo; "
            "pipe the key in with --key-stdin instead"
        )
    interactive = args.prompt_key or stdin.isatty()
    try:
        key = (getpass.getpass(prompt) if interactive else stdin.readline()).rstrip("\r\n")
    except EOFError:
        key = ""
    if not key:
        raise UsageError(
            "no key was entered (omit --prompt-key/--key-stdin to keep the stored key)"
        )
    return key


def _has_terminal() -> bool:
    """Whether this process has a controlling terminal getpass can read without echo
    (without one, getpass would fall back to stdin and echo the key)."""
    try:
        fd = os.open("/dev/tty", os.O_RDWR | getattr(os, "O_NOCTTY", 0))
    except OSError:
        return False
    os.close(fd)
    return True


def _options(pairs: Sequence[str]) -> dict[str, str]:
    options: dict[str, str] = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name:
            raise UsageError(f"--option wants NAME=VALUE, got {pair!r}")
        options[name] = value
    return options


def cmd_set(
    client: AdminClient, args: argparse.Namespace, out: TextIO, stdin: TextIO = sys.stdin
) -> Exit:
    """UpdateConfig: provider, optional new key, model, options, expected revision."""
    options = _options(args.option or [])
    key = _read_key(args, stdin)
    fallbacks = fallback_specs(args, stdin)
    result = client.update_config(
        args.stage,
        args.provider,
        api_key=key,
        model=args.model,
        options=options or None,
        expected_revision=args.expected_revision,
        validate_only=args.validate_only,
        comment=args.comment,
        allow_unverified=args.allow_unverified,
        fallbacks=fallbacks,
        clear_fallbacks=args.clear_fallbacks,
    )
    if args.json:
        print_json(result, out)
    elif result.written:
        out.write(f"saved at revision {result.config.revision}: {config_line(result.config)}\n")
        for line in stage_route_lines(args.stage, result.routes):
            out.write(line + "\n")
    elif args.validate_only:
        out.write(f"valid (nothing written): {config_line(result.config)}\n")
    else:  # identical to the stored config: the server wrote nothing
        revision = result.config.revision
        out.write(f"unchanged (identical to revision {revision}): {config_line(result.config)}\n")
    return Exit.OK


def cmd_models(client: AdminClient, args: argparse.Namespace, out: TextIO) -> Exit:
    """The stage's model list; ``*`` marks the selected model."""
    listing = client.list_models(args.stage, refresh=args.refresh)
    if args.json:
        print_json(listing, out)
        return Exit.OK
    out.write(
        f"{args.stage.value}: {listing.provider}, status {listing.status.value}, "
        f"fetched {when(listing.updated_at)}\n"
    )
    if listing.status_reason:
        out.write(f"reason: {listing.status_reason}\n")
    for model in listing.models:
        out.write(f"{'*' if model == listing.selected_model else ' '} {model}\n")
    return Exit.OK


def cmd_refresh(client: AdminClient, args: argparse.Namespace, out: TextIO) -> Exit:
    """RefreshModels for one stage or every stored stage."""
    results = client.refresh_models(args.stage)
    if args.json:
        print_json(results, out)
        return Exit.OK
    table(
        ["STAGE", "STATUS", "MODEL", "REPLACED", "MODELS", "REVISION", "REASON"],
        (
            [
                r.stage_type.value,
                r.status.value,
                r.selected_model,
                r.replaced_model or "-",
                str(len(r.models)),
                str(r.revision),
                short(r.status_reason),
            ]
            for r in results
        ),
        out,
    )
    return Exit.OK


def _changes(entry: HistoryEntry) -> str:
    return "; ".join(
        f"{c.field}: {c.old_value or '-'} → {c.new_value or '-'}" for c in entry.changes
    )


def cmd_history(client: AdminClient, args: argparse.Namespace, out: TextIO) -> Exit:
    """The revision log, newest first, up to ``--limit`` entries; the changes and the
    comment are cut to the terminal's width unless ``--wide``."""
    entries = list(client.iter_history(args.stage, limit=args.limit or None))
    if args.json:
        print_json(entries, out)
        return Exit.OK
    table(
        ["REV", "TIME", "STAGE", "REASON", "ACTOR", "CHANGES", "COMMENT"],
        (
            [
                str(e.revision),
                when(e.time),
                e.stage_type.value,
                e.reason.value,
                e.actor,
                _changes(e),
                e.comment,
            ]
            for e in entries
        ),
        out,
        width=None if args.wide else terminal_width(out),
        cut={5: 2, 6: 1},  # CHANGES keeps twice the room of COMMENT
    )
    return Exit.OK


def cmd_rollback(client: AdminClient, args: argparse.Namespace, out: TextIO) -> Exit:
    """RollbackConfig: a new revision with an earlier revision's provider, key and model."""
    config = client.rollback(args.stage, args.revision, expected_revision=args.expected_revision)
    if args.json:
        print_json(config, out)
    else:
        out.write(
            f"restored revision {args.revision} as revision {config.revision}: "
            f"{config_line(config)}\n"
        )
    return Exit.OK


def cmd_watch(client: AdminClient, args: argparse.Namespace, out: TextIO) -> Exit:
    """Live changes, one line (or one JSON object) per event, keys masked."""
    client_id = args.client_id or f"{PROG}@{os.uname().nodename}/{os.getpid()}"
    with client.watch(args.stages, client_id=client_id, duration=args.timeout) as stream:
        for event in stream:
            if isinstance(event, HeartbeatEvent) and not args.heartbeats:
                continue
            if args.json:
                kind = type(event).__name__.removesuffix("Event").lower()
                print_json({"event": kind, **jsonable(event)}, out)
            else:
                out.write(event_line(event) + "\n")
                out.flush()  # one line per event, also into a pipe
    return Exit.OK
