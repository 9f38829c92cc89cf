"""The client's one exception tree. ``grpc.RpcError`` never reaches user code: every
status is translated here, in one table, to a typed exception (``raise … from e``).

    StageConfigError
      NotReadyError            no config arrived within wait_ready's timeout
      StageNotConfiguredError  the stage has no config (also a KeyError)
      ClientClosedError        the client was closed
      CacheFileError           the last-known-good file is unreadable or tampered with
      AllRoutesFailed          every route of a stage failed a call (``.failures``)
      RPCError                 the server answered with a status (``.code``)
        InvalidArgumentError   a request field is wrong (``.field``)
        NotFoundError
        ConflictError          expected_revision is stale (``.current_revision``)
        KeyRejectedError       the provider refused the key; nothing changed
        SecretMismatchError    the server's ADMIN_SECRET_KEY cannot decrypt a stored key
        PermissionDeniedError
        UnauthenticatedError
        UnavailableError       server or database unreachable; retry
        DeadlineExceededError
"""

from __future__ import annotations

import enum
from typing import Any


class StatusCode(enum.Enum):
    """gRPC status codes, so user code never imports grpc."""

    OK = 0
    CANCELLED = 1
    UNKNOWN = 2
    INVALID_ARGUMENT = 3
    DEADLINE_EXCEEDED = 4
    NOT_FOUND = 5
    ALREADY_EXISTS = 6
    PERMISSION_DENIED = 7
    RESOURCE_EXHAUSTED = 8
    FAILED_PRECONDITION = 9
    ABORTED = 10
    OUT_OF_RANGE = 11
    UNIMPLEMENTED = 12
    INTERNAL = 13
    UNAVAILABLE = 14
    DATA_LOSS = 15
    UNAUTHENTICATED = 16


class StageConfigError(Exception):
    """Root of every error the client raises."""


class NotReadyError(StageConfigError):
    """The client has no config to serve yet."""


class StageNotConfiguredError(StageConfigError, KeyError):
    """The client holds no config for this stage: nothing is stored on the server and no
    legacy fallback supplies one, or the client does not watch the stage.

    Also a ``KeyError``, so ``except KeyError`` works as it would for a mapping.
    """

    def __init__(self, stage: str, message: str) -> None:
        super().__init__(message)
        self.stage = stage
        self.message = message

    def __str__(self) -> str:  # KeyError would repr() the message
        return self.message


class ClientClosedError(StageConfigError):
    """The client was closed."""


class CacheFileError(StageConfigError):
    """The last-known-good file cannot be used."""


class AllRoutesFailed(StageConfigError):
    """Every route of a stage failed one call (``stageconfig.providers.run_with_fallback``).

    The message names each route's failure — ``primary GEMINI: QUOTA (429); fallback 1
    OPENAI: UPSTREAM (500)`` — and never a key or a provider's answer. ``failures`` holds
    ``(route label, RouteFailure)`` pairs when raised in this process (not after a
    Celery result backend carried it: only the message travels).
    """

    def __init__(self, message: str, failures: tuple[tuple[str, Any], ...] = ()) -> None:
        super().__init__(message)
        self.failures = failures


class RPCError(StageConfigError):
    """The server answered a call with a non-OK status."""

    def __init__(self, code: StatusCode, message: str) -> None:
        super().__init__(f"{code.name}: {message}")
        self.code = code
        self.message = message


class InvalidArgumentError(RPCError):
    """A request field is wrong; ``field`` names it (from google.rpc.BadRequest)."""

    def __init__(self, code: StatusCode, message: str, field: str = "") -> None:
        super().__init__(code, message)
        self.field = field


class NotFoundError(RPCError):
    """Nothing is stored (and no fallback exists) for what was asked."""


class ConflictError(RPCError):
    """An optimistic write found another revision; reload and retry."""

    def __init__(self, code: StatusCode, message: str, current_revision: int | None = None):
        super().__init__(code, message)
        self.current_revision = current_revision


class KeyRejectedError(RPCError):
    """The provider refused the key; the stored config is unchanged."""


class RolloutStateError(KeyRejectedError):
    """The stage's rollout forbids the call, and nothing was written: a rollout runs (a
    change of the stage, or a second rollout, waits until it is promoted or aborted), or
    none runs (nothing to promote or abort). Code FAILED_PRECONDITION, ``ErrorInfo``
    reason ``ROLLOUT_RUNNING`` or ``NO_ROLLOUT``. A KeyRejectedError only because code
    written before rollouts caught every FAILED_PRECONDITION as one; the key is fine.
    """


class SecretMismatchError(RPCError):
    """The server's ``ADMIN_SECRET_KEY`` cannot decrypt a key it stored (for instance a
    rollback to a revision encrypted under a secret no longer configured): the server's
    configuration, not the request, is wrong; an operator must fix it (code INTERNAL,
    ``ErrorInfo`` reason ``SECRET_MISMATCH``). Not a KeyRejectedError: the key is fine.
    """


class PermissionDeniedError(RPCError):
    """The token's role may not make this call."""


class UnauthenticatedError(RPCError):
    """No token, or one the server does not know."""


class UnavailableError(RPCError):
    """The server (or its database) cannot be reached now; retry later."""


class DeadlineExceededError(RPCError):
    """The call did not finish within its deadline."""


_ERROR_BY_CODE: dict[StatusCode, type[RPCError]] = {
    StatusCode.INVALID_ARGUMENT: InvalidArgumentError,
    StatusCode.NOT_FOUND: NotFoundError,
    StatusCode.ABORTED: ConflictError,
    StatusCode.FAILED_PRECONDITION: KeyRejectedError,
    StatusCode.PERMISSION_DENIED: PermissionDeniedError,
    StatusCode.UNAUTHENTICATED: UnauthenticatedError,
    StatusCode.UNAVAILABLE: UnavailableError,
    StatusCode.DEADLINE_EXCEEDED: DeadlineExceededError,
}
"""The one table from status codes to exceptions; anything else is a plain RPCError."""

ERROR_DOMAIN = "stageconfig"
"""The ``google.rpc.ErrorInfo`` domain of the server's reasons."""

_ERROR_BY_REASON: dict[str, type[RPCError]] = {
    "SECRET_MISMATCH": SecretMismatchError,
    "ROLLOUT_RUNNING": RolloutStateError,
    "NO_ROLLOUT": RolloutStateError,
}
"""ErrorInfo reasons that name the error more precisely than the code; they win."""


def translate_rpc_error(error: Any) -> RPCError:
    """The typed exception for a ``grpc.RpcError`` (details parsed from its status)."""
    from google.rpc import error_details_pb2
    from grpc_status import rpc_status

    code_value = error.code().value[0] if error.code() is not None else 2
    code = StatusCode(code_value)
    message = error.details() or ""
    field = ""
    current_revision: int | None = None
    reason = ""
    try:
        status = rpc_status.from_call(error)
    except (ValueError, AttributeError):
        status = None
    if status is not None:
        for detail in status.details:
            if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
                bad = error_details_pb2.BadRequest()
                detail.Unpack(bad)
                if bad.field_violations:
                    field = bad.field_violations[0].field
            elif detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
                info = error_details_pb2.ErrorInfo()
                detail.Unpack(info)
                if info.domain == ERROR_DOMAIN:
                    reason = info.reason
                if "current_revision" in info.metadata:
                    current_revision = int(info.metadata["current_revision"])
    cls = _ERROR_BY_REASON.get(reason) or _ERROR_BY_CODE.get(code, RPCError)
    if cls is InvalidArgumentError:
        return InvalidArgumentError(code, message, field)
    if cls is ConflictError:
        return ConflictError(code, message, current_revision)
    return cls(code, message)
