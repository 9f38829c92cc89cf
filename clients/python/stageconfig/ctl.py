"""``stageconfigctl``: the admin command line of stageconfig, built on ``AdminClient``.

    stageconfigctl status                         the four stages at a glance
    stageconfigctl get POEM                       one stage in full
    stageconfigctl set POEM --provider OPENAI --prompt-key [--model gpt-4o] …
    stageconfigctl models POEM [--refresh]        the cached (or fresh) model list
    stageconfigctl refresh [STAGE]                run the model sync now
    stageconfigctl history [STAGE] [--limit N]    the revision log, newest first
    stageconfigctl rollback POEM 12               restore revision 12 as a new revision
    stageconfigctl watch [STAGE…] [--timeout S]   live changes, one line each
    stageconfigctl watchers                       connected WatchConfig streams

Keys are only ever shown masked. ``set`` keeps the stored key unless one is given, and
reads a new one without echo (``--prompt-key``) or from stdin (``--key-stdin``); it takes
a key from the command line only with ``--api-key-insecure-argv``.

Exit codes: 0 done; 1 the server refused (invalid argument, not found, key rejected…);
2 usage error; 3 server unreachable or timed out; 4 conflict (stale
``--expected-revision``: reload and retry); 5 not authenticated or not allowed;
130 interrupted.
"""

from __future__ import annotations

import argparse
import enum
import getpass
import json
import os
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import fields, is_dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

from stageconfig._types import ConfigSource, ProviderKind, StageConfig, StageType
from stageconfig.admin import (
    AdminClient,
    ChangeEvent,
    HeartbeatEvent,
    HistoryEntry,
    SnapshotEvent,
    StageView,
    WatchEvent,
)
from stageconfig.errors import (
    ConflictError,
    DeadlineExceededError,
    InvalidArgumentError,
    PermissionDeniedError,
    RPCError,
    UnauthenticatedError,
    UnavailableError,
)

PROG = "stageconfigctl"
DEFAULT_TARGET = "127.0.0.1:50051"
TARGET_ENV = "STAGECONFIG_TARGET"
TOKEN_ENV = "STAGECONFIG_TOKEN"


class Exit(enum.IntEnum):
    """The exit codes (documented in the module docstring and the README)."""

    OK = 0
    REFUSED = 1
    USAGE = 2
    UNAVAILABLE = 3
    CONFLICT = 4
    AUTH = 5
    INTERRUPTED = 130


class UsageError(Exception):
    """A mistake on the command line found after parsing (exit 2)."""


# --- output -------------------------------------------------------------------------------


def _jsonable(value: Any) -> Any:
    """Dataclasses, enums, datetimes and mappings as JSON values."""
    if is_dataclass(value) and not isinstance(value, type):
        return {f.name: _jsonable(getattr(value, f.name)) for f in fields(value)}
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    return value


def _print_json(value: Any, out: TextIO) -> None:
    out.write(json.dumps(_jsonable(value), ensure_ascii=False) + "\n")
    out.flush()


def _table(headers: Sequence[str], rows: Iterable[Sequence[str]], out: TextIO) -> None:
    all_rows = [list(headers), *([str(c) for c in row] for row in rows)]
    widths = [max(len(row[i]) for row in all_rows) for i in range(len(headers))]
    for row in all_rows:
        out.write("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() + "\n")


def _time(value: datetime | None) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%SZ") if value else "-"


def _age(value: datetime | None, now: datetime) -> str:
    if value is None:
        return "-"
    seconds = max(0, int((now - value).total_seconds()))
    for unit, size in (("d", 86_400), ("h", 3_600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def _short(text: str, limit: int = 60) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _config_line(config: StageConfig) -> str:
    line = (
        f"{config.stage_type.value} {config.provider_kind.value} {config.model} "
        f"{config.status.value} key {config.api_key or '-'}"
    )
    return f"{line} ({config.status_reason})" if config.status_reason else line


# --- commands -----------------------------------------------------------------------------


def cmd_status(client: AdminClient, args: argparse.Namespace, out: TextIO) -> Exit:
    """The four stages: provider, model, status, revision, cache age, key, reason."""
    overview = client.list_configs()
    if args.json:
        _print_json(overview, out)
        return Exit.OK
    now = datetime.now(UTC)
    rows = []
    for view in overview.stages:
        config = view.config
        if config is None:
            rows.append([view.stage_type.value, "-", "-", "UNCONFIGURED", "-", "-", "-", ""])
            continue
        reason = config.status_reason
        if view.source is ConfigSource.FALLBACK:
            reason = reason or "from the server's legacy env (not stored)"
        rows.append(
            [
                view.stage_type.value,
                config.provider_kind.value,
                config.model,
                config.status.value,
                str(config.revision) if view.source is ConfigSource.DATABASE else "fallback",
                _age(config.models_cache_updated_at, now),
                config.api_key or "-",
                _short(reason),
            ]
        )
    _table(
        ["STAGE", "PROVIDER", "MODEL", "STATUS", "REVISION", "CACHE AGE", "KEY", "REASON"],
        rows,
        out,
    )
    out.write(f"head revision {overview.head_revision}\n")
    return Exit.OK


def _show_view(view: StageView, out: TextIO) -> None:
    config = view.config
    lines = [("stage", view.stage_type.value), ("source", view.source.value)]
    if config is not None:
        lines += [
            ("provider", config.provider_kind.value),
            ("model", config.model),
            ("key", config.api_key or "-"),
            ("key fingerprint", config.api_key_fingerprint or "-"),
            ("status", config.status.value),
            ("reason", config.status_reason or "-"),
            ("revision", str(view.revision)),
            ("updated", _time(config.updated_at)),
            ("options", ", ".join(f"{k}={v}" for k, v in sorted(config.options.items())) or "-"),
            ("models cached", _time(config.models_cache_updated_at)),
        ]
    lines += [
        ("allowed providers", ", ".join(p.value for p in view.allowed_providers)),
        ("models", ", ".join(view.models) or "-"),
    ]
    width = max(len(name) for name, _ in lines)
    for name, value in lines:
        out.write(f"{name.ljust(width)}  {value}\n")


def cmd_get(client: AdminClient, args: argparse.Namespace, out: TextIO) -> Exit:
    """One stage in full (key masked)."""
    view = client.list_configs().stage(args.stage)
    if args.json:
        _print_json(view, out)
    else:
        _show_view(view, out)
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
    interactive = args.prompt_key or stdin.isatty()
    key = (getpass.getpass(prompt) if interactive else stdin.readline()).rstrip("\r\n")
    if not key:
        raise UsageError(
            "no key was entered (omit --prompt-key/--key-stdin to keep the stored key)"
        )
    return key


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
    result = client.update_config(
        args.stage,
        args.provider,
        api_key=key,
        model=args.model,
        options=options or None,
        expected_revision=args.expected_revision,
        validate_only=args.validate_only,
        comment=args.comment,
    )
    if args.json:
        _print_json(result, out)
    elif result.written:
        out.write(f"saved at revision {result.config.revision}: {_config_line(result.config)}\n")
    else:
        out.write(f"valid (nothing written): {_config_line(result.config)}\n")
    return Exit.OK


def cmd_models(client: AdminClient, args: argparse.Namespace, out: TextIO) -> Exit:
    """The stage's model list; ``*`` marks the selected model."""
    listing = client.list_models(args.stage, refresh=args.refresh)
    if args.json:
        _print_json(listing, out)
        return Exit.OK
    out.write(
        f"{args.stage.value}: {listing.provider_kind.value}, status {listing.status.value}, "
        f"fetched {_time(listing.updated_at)}\n"
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
        _print_json(results, out)
        return Exit.OK
    _table(
        ["STAGE", "STATUS", "MODEL", "REPLACED", "MODELS", "REVISION", "REASON"],
        (
            [
                r.stage_type.value,
                r.status.value,
                r.selected_model,
                r.replaced_model or "-",
                str(len(r.models)),
                str(r.revision),
                _short(r.status_reason),
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
    """The revision log, newest first, up to ``--limit`` entries."""
    entries = list(client.iter_history(args.stage, limit=args.limit or None))
    if args.json:
        _print_json(entries, out)
        return Exit.OK
    _table(
        ["REV", "TIME", "STAGE", "REASON", "ACTOR", "CHANGES", "COMMENT"],
        (
            [
                str(e.revision),
                _time(e.time),
                e.stage_type.value,
                e.reason.value,
                e.actor,
                _changes(e),
                e.comment,
            ]
            for e in entries
        ),
        out,
    )
    return Exit.OK


def cmd_rollback(client: AdminClient, args: argparse.Namespace, out: TextIO) -> Exit:
    """RollbackConfig: a new revision with an earlier revision's provider, key and model."""
    config = client.rollback(args.stage, args.revision, expected_revision=args.expected_revision)
    if args.json:
        _print_json(config, out)
    else:
        out.write(
            f"restored revision {args.revision} as revision {config.revision}: "
            f"{_config_line(config)}\n"
        )
    return Exit.OK


def _event_line(event: WatchEvent) -> str:
    now = _time(datetime.now(UTC))
    if isinstance(event, SnapshotEvent):
        stages = "; ".join(_config_line(c) for c in event.configs) or "no stage configured"
        return f"{now} snapshot revision {event.revision}: {stages}"
    if isinstance(event, ChangeEvent):
        return (
            f"{now} change revision {event.revision} ({event.reason.value}): "
            f"{_config_line(event.config)}"
        )
    return f"{now} heartbeat head revision {event.head_revision}"


def cmd_watch(client: AdminClient, args: argparse.Namespace, out: TextIO) -> Exit:
    """Live changes, one line (or one JSON object) per event, keys masked."""
    client_id = args.client_id or f"{PROG}@{os.uname().nodename}/{os.getpid()}"
    with client.watch(args.stages, client_id=client_id, duration=args.timeout) as stream:
        for event in stream:
            if isinstance(event, HeartbeatEvent) and not args.heartbeats:
                continue
            if args.json:
                kind = type(event).__name__.removesuffix("Event").lower()
                _print_json({"event": kind, **_jsonable(event)}, out)
            else:
                out.write(_event_line(event) + "\n")
                out.flush()  # one line per event, also into a pipe
    return Exit.OK


def cmd_watchers(client: AdminClient, args: argparse.Namespace, out: TextIO) -> Exit:
    """Every connected WatchConfig stream."""
    listing = client.list_watchers()
    if args.json:
        _print_json(listing, out)
        return Exit.OK
    _table(
        ["CLIENT", "ACTOR", "PEER", "STAGES", "CONNECTED", "REVISION"],
        (
            [
                w.client_id,
                w.actor,
                w.peer,
                ",".join(s.value for s in w.stage_types),
                _time(w.connected_since),
                str(w.last_revision),
            ]
            for w in listing.watchers
        ),
        out,
    )
    out.write(f"{len(listing.watchers)} watcher(s), head revision {listing.head_revision}\n")
    return Exit.OK


# --- the parser ---------------------------------------------------------------------------


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
    doc = __doc__ or ""
    parser = argparse.ArgumentParser(
        prog=PROG,
        description=doc.split("\n")[0].replace("``", ""),
        epilog="exit codes: 0 ok, 1 refused by the server, 2 usage, 3 unavailable, "
        "4 conflict (stale revision), 5 not authenticated/allowed, 130 interrupted",
    )
    parser.add_argument(
        "--target",
        default=os.environ.get(TARGET_ENV, DEFAULT_TARGET),
        help=f"server host:port (env {TARGET_ENV}; default {DEFAULT_TARGET})",
    )
    parser.add_argument(
        "--token",
        default=os.environ.get(TOKEN_ENV) or None,
        help=f"admin bearer token (env {TOKEN_ENV}, preferred: argv is visible to others)",
    )
    parser.add_argument("--tls", action="store_true", help="use TLS (system roots by default)")
    parser.add_argument("--tls-ca", type=Path, metavar="PEM", help="CA bundle to verify the server")
    parser.add_argument("--tls-cert", type=Path, metavar="PEM", help="client certificate (mTLS)")
    parser.add_argument("--tls-key", type=Path, metavar="PEM", help="client private key (mTLS)")
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
    common = argparse.ArgumentParser(add_help=False)
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

    rollback = command("rollback", cmd_rollback, "restore an earlier revision as a new one")
    rollback.add_argument("stage", type=_stage, metavar="STAGE")
    rollback.add_argument("revision", type=_non_negative, metavar="REVISION")
    rollback.add_argument("--expected-revision", type=_non_negative, metavar="N")

    watch = command("watch", cmd_watch, "stream changes live (Ctrl-C to stop)")
    watch.add_argument("stages", type=_stage, nargs="*", metavar="STAGE")
    watch.add_argument("--timeout", type=_positive_float, metavar="SECONDS", help="stop after")
    watch.add_argument("--heartbeats", action="store_true", help="print heartbeats too")
    watch.add_argument("--client-id", default="", help="name shown by `watchers`")

    command("watchers", cmd_watchers, "connected WatchConfig streams")
    return parser


def _read_file(path: Path | None) -> bytes | None:
    if path is None:
        return None
    try:
        return path.read_bytes()
    except OSError as error:
        raise UsageError(f"cannot read {path}: {error.strerror}") from error


def _client(args: argparse.Namespace) -> AdminClient:
    return AdminClient(
        args.target,
        token=args.token,
        tls=args.tls,
        root_certificates=_read_file(args.tls_ca),
        client_certificate=_read_file(args.tls_cert),
        client_key=_read_file(args.tls_key),
        timeout=args.call_timeout,
    )


def _error_exit(error: RPCError, target: str) -> tuple[Exit, str]:
    if isinstance(error, UnavailableError):
        return Exit.UNAVAILABLE, f"cannot reach {target}: {error.message}"
    if isinstance(error, DeadlineExceededError):
        return Exit.UNAVAILABLE, f"{target} did not answer in time: {error.message}"
    if isinstance(error, ConflictError):
        return Exit.CONFLICT, f"conflict: {error.message}"
    if isinstance(error, UnauthenticatedError):
        return Exit.AUTH, f"not authenticated (set --token or {TOKEN_ENV}): {error.message}"
    if isinstance(error, PermissionDeniedError):
        return Exit.AUTH, f"not allowed (an admin token is needed): {error.message}"
    if isinstance(error, InvalidArgumentError) and error.field:
        message = error.message
        if not message.startswith(f"{error.field}:"):
            message = f"{error.field}: {message}"
        return Exit.REFUSED, f"invalid argument {message}"
    return Exit.REFUSED, f"{error.code.name.lower().replace('_', ' ')}: {error.message}"


def _fail(code: Exit, message: str, as_json: bool, extra: Mapping[str, Any] | None = None) -> Exit:
    if as_json:
        payload = {"error": {"exit_code": int(code), "message": message, **(extra or {})}}
        sys.stderr.write(json.dumps(payload, ensure_ascii=False) + "\n")
    else:
        sys.stderr.write(f"{PROG}: {' '.join(message.split())}\n")  # always one line
    return code


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``stageconfigctl`` console script; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    as_json = bool(args.json)
    try:
        with _client(args) as client:
            result: Exit = args.handler(client, args, sys.stdout)
            return int(result)
    except UsageError as error:
        return int(_fail(Exit.USAGE, str(error), as_json))
    except RPCError as error:
        code, message = _error_exit(error, args.target)
        extra: dict[str, Any] = {"code": error.code.name}
        if isinstance(error, InvalidArgumentError):
            extra["field"] = error.field
        if isinstance(error, ConflictError):
            extra["current_revision"] = error.current_revision
        return int(_fail(code, message, as_json, extra))
    except KeyboardInterrupt:
        return int(Exit.INTERRUPTED)
    except BrokenPipeError:
        # `stageconfigctl history | head`: the reader left, which is not an error. Point
        # stdout at /dev/null so the interpreter's final flush does not complain.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return int(Exit.OK)


if __name__ == "__main__":
    sys.exit(main())
