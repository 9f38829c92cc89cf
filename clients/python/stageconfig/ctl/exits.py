"""How ``stageconfigctl`` ends: its exit codes, and how a failure becomes one of them and
the one line on stderr that explains it."""

from __future__ import annotations

import enum
import sys
from collections.abc import Mapping
from typing import Any

from stageconfig.ctl.output import json_text, printable
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
TOKEN_ENV = "STAGECONFIG_TOKEN"


class Exit(enum.IntEnum):
    """The exit codes (documented in the package docstring and the README)."""

    OK = 0
    REFUSED = 1
    USAGE = 2
    UNAVAILABLE = 3
    CONFLICT = 4
    AUTH = 5
    INTERRUPTED = 130


class UsageError(Exception):
    """A mistake on the command line (exit 2); ``usage`` is the command's usage line
    when the parser found it."""

    def __init__(self, message: str, *, usage: str = "") -> None:
        super().__init__(message)
        self.usage = usage


def error_exit(error: RPCError, target: str) -> tuple[Exit, str]:
    """The exit code of a failed call and the message saying why."""
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


def error_details(error: RPCError) -> dict[str, Any]:
    """What ``--json`` adds to an error object: the code, and the field or the current
    revision when the error carries one."""
    details: dict[str, Any] = {"code": error.code.name}
    if isinstance(error, InvalidArgumentError):
        details["field"] = error.field
    if isinstance(error, ConflictError):
        details["current_revision"] = error.current_revision
    return details


def fail(code: Exit, message: str, as_json: bool, extra: Mapping[str, Any] | None = None) -> Exit:
    """Write the failure to stderr — one line, a JSON object under ``--json`` — and
    return its exit code."""
    if as_json:
        payload = {"error": {"exit_code": int(code), "message": message, **(extra or {})}}
        sys.stderr.write(json_text(payload) + "\n")
    else:
        # Always one line, and never a control character: messages carry server text.
        sys.stderr.write(f"{PROG}: {printable(' '.join(message.split()))}\n")
    return code
