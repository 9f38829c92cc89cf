"""The one table from the service's errors to gRPC status codes.

Every answer to a user mistake carries a precise code and, for InvalidArgument, a
``google.rpc.BadRequest`` detail naming the field. Anything unexpected becomes INTERNAL
with a fixed message (the traceback goes to the log, not to the caller). The servicer
and the auth interceptor both answer through ``status_for``: no other code decides a
status.

The caller's key and the server's secret never share a code:

- KeyRejected (the provider refused the *caller's* key) → FAILED_PRECONDITION with
  ``ErrorInfo(reason="KEY_REJECTED_<cause>")``: fix the key and try again;
- KeyUnverified (the provider could not verify a key that would replace a working
  config) → FAILED_PRECONDITION with ``ErrorInfo(reason="KEY_UNVERIFIED", metadata
  cause)``: set ``allow_unverified`` to store it anyway, or retry when the provider answers;
- SecretMismatch (the *server's* ``ADMIN_SECRET_KEY`` cannot decrypt a stored key, e.g.
  a rollback to a revision written under a secret that was dropped too early) →
  INTERNAL with ``ErrorInfo(reason="SECRET_MISMATCH")`` and a message naming the
  variable (never a secret): nothing the caller sends can fix it, an operator must,
  and dashboards count it among the server's errors.
"""

from __future__ import annotations

import logging
from typing import Any, cast

import grpc
from google.protobuf import any_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from stageconfig_server.errors import (
    InvalidArgument,
    KeyRejected,
    KeyUnverified,
    NotFound,
    PermissionDenied,
    ResourceExhausted,
    RevisionConflict,
    RolloutConflict,
    SecretMismatch,
    StageConfigError,
    StorageUnavailable,
    Unauthenticated,
)

log = logging.getLogger(__name__)

ERROR_DOMAIN = "stageconfig"
"""``ErrorInfo.domain`` of every reason below."""
REVISION_CONFLICT_REASON = "REVISION_CONFLICT"
KEY_REJECTED_REASON_PREFIX = "KEY_REJECTED_"
"""Followed by the StatusCause (``KEY_REJECTED_AUTH``, ``KEY_REJECTED_PERMISSION``)."""
KEY_UNVERIFIED_REASON = "KEY_UNVERIFIED"
"""With ``metadata["cause"]``: why the provider could not verify the key."""
SECRET_MISMATCH_REASON = "SECRET_MISMATCH"
ROLLOUT_REASON = "ROLLOUT_RUNNING"
"""With ``metadata["candidate_revision"]``: the running rollout that refused the call."""
NO_ROLLOUT_REASON = "NO_ROLLOUT"

STATUS_BY_ERROR: tuple[tuple[type[StageConfigError], grpc.StatusCode], ...] = (
    (InvalidArgument, grpc.StatusCode.INVALID_ARGUMENT),
    (NotFound, grpc.StatusCode.NOT_FOUND),
    (RevisionConflict, grpc.StatusCode.ABORTED),
    (KeyRejected, grpc.StatusCode.FAILED_PRECONDITION),
    (KeyUnverified, grpc.StatusCode.FAILED_PRECONDITION),
    (RolloutConflict, grpc.StatusCode.FAILED_PRECONDITION),
    (PermissionDenied, grpc.StatusCode.PERMISSION_DENIED),
    (Unauthenticated, grpc.StatusCode.UNAUTHENTICATED),
    (StorageUnavailable, grpc.StatusCode.UNAVAILABLE),
    (ResourceExhausted, grpc.StatusCode.RESOURCE_EXHAUSTED),
    (SecretMismatch, grpc.StatusCode.INTERNAL),
)
"""Error class → gRPC code; the first match wins."""


def code_for(error: StageConfigError) -> grpc.StatusCode:
    """The status code of a service error (``STATUS_BY_ERROR``)."""
    return next(c for cls, c in STATUS_BY_ERROR if isinstance(error, cls))


def status_for(error: StageConfigError) -> grpc.Status:
    """The rich gRPC status (code, message, details) of a service error."""
    code = code_for(error)
    if code is grpc.StatusCode.INTERNAL:
        # The server's own fault (its secret): the operator reads the log, not the caller.
        log.error("answering INTERNAL: %s", error.message)
    status = status_pb2.Status(code=code.value[0], message=error.message)
    detail = _detail_of(error)
    if detail is not None:
        packed = any_pb2.Any()
        packed.Pack(detail)
        status.details.append(packed)
    return rpc_status.to_status(status)


def _detail_of(
    error: StageConfigError,
) -> error_details_pb2.BadRequest | error_details_pb2.ErrorInfo | None:
    """The one ``google.rpc`` detail an error carries, if any."""
    if isinstance(error, InvalidArgument):
        violation = error_details_pb2.BadRequest.FieldViolation(
            field=error.field, description=error.description
        )
        return error_details_pb2.BadRequest(field_violations=[violation])
    if isinstance(error, RevisionConflict):
        return error_details_pb2.ErrorInfo(
            reason=REVISION_CONFLICT_REASON,
            domain=ERROR_DOMAIN,
            metadata={"current_revision": str(error.current_revision)},
        )
    if isinstance(error, KeyRejected):
        return error_details_pb2.ErrorInfo(
            reason=KEY_REJECTED_REASON_PREFIX + error.cause, domain=ERROR_DOMAIN
        )
    if isinstance(error, KeyUnverified):
        return error_details_pb2.ErrorInfo(
            reason=KEY_UNVERIFIED_REASON, domain=ERROR_DOMAIN, metadata={"cause": error.cause}
        )
    if isinstance(error, SecretMismatch):
        return error_details_pb2.ErrorInfo(reason=SECRET_MISMATCH_REASON, domain=ERROR_DOMAIN)
    if isinstance(error, RolloutConflict):
        if not error.candidate_revision:
            return error_details_pb2.ErrorInfo(reason=NO_ROLLOUT_REASON, domain=ERROR_DOMAIN)
        return error_details_pb2.ErrorInfo(
            reason=ROLLOUT_REASON,
            domain=ERROR_DOMAIN,
            metadata={"candidate_revision": str(error.candidate_revision)},
        )
    return None


async def abort_with_error(
    context: grpc.aio.ServicerContext[Any, Any], error: StageConfigError
) -> None:
    """End the call with ``error``'s status (always raises: grpc's AbortError)."""
    # grpc-stubs lacks aio's abort_with_status.
    await cast(Any, context).abort_with_status(status_for(error))


def internal_status() -> grpc.Status:
    """What a caller sees of a bug: INTERNAL with no detail that could leak data."""
    return rpc_status.to_status(
        status_pb2.Status(
            code=code_pb2.INTERNAL, message="internal error; the server log has the details"
        )
    )
