"""The one table from the service's errors to gRPC status codes.

Every answer to a user mistake carries a precise code and, for InvalidArgument, a
``google.rpc.BadRequest`` detail naming the field. Anything unexpected becomes INTERNAL
with a fixed message (the traceback goes to the log, not to the caller).
"""

from __future__ import annotations

import logging

import grpc
from google.protobuf import any_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from stageconfig_server.errors import (
    InvalidArgument,
    KeyRejected,
    NotFound,
    PermissionDenied,
    RevisionConflict,
    SecretMismatch,
    StageConfigError,
    StorageUnavailable,
    Unauthenticated,
)

log = logging.getLogger(__name__)

STATUS_BY_ERROR: tuple[tuple[type[StageConfigError], grpc.StatusCode], ...] = (
    (InvalidArgument, grpc.StatusCode.INVALID_ARGUMENT),
    (NotFound, grpc.StatusCode.NOT_FOUND),
    (RevisionConflict, grpc.StatusCode.ABORTED),
    (KeyRejected, grpc.StatusCode.FAILED_PRECONDITION),
    (PermissionDenied, grpc.StatusCode.PERMISSION_DENIED),
    (Unauthenticated, grpc.StatusCode.UNAUTHENTICATED),
    (StorageUnavailable, grpc.StatusCode.UNAVAILABLE),
    (SecretMismatch, grpc.StatusCode.FAILED_PRECONDITION),
)
"""Error class → gRPC code; the first match wins."""


def status_for(error: StageConfigError) -> grpc.Status:
    """The rich gRPC status (code, message, details) of a service error."""
    code = next(c for cls, c in STATUS_BY_ERROR if isinstance(error, cls))
    status = status_pb2.Status(code=code.value[0], message=error.message)
    if isinstance(error, InvalidArgument):
        detail = any_pb2.Any()
        detail.Pack(
            error_details_pb2.BadRequest(
                field_violations=[
                    error_details_pb2.BadRequest.FieldViolation(
                        field=error.field, description=error.description
                    )
                ]
            )
        )
        status.details.append(detail)
    elif isinstance(error, RevisionConflict):
        detail = any_pb2.Any()
        detail.Pack(
            error_details_pb2.ErrorInfo(
                reason="REVISION_CONFLICT",
                domain="stageconfig",
                metadata={"current_revision": str(error.current_revision)},
            )
        )
        status.details.append(detail)
    elif isinstance(error, KeyRejected):
        detail = any_pb2.Any()
        detail.Pack(
            error_details_pb2.ErrorInfo(reason=f"KEY_REJECTED_{error.cause}", domain="stageconfig")
        )
        status.details.append(detail)
    return rpc_status.to_status(status)


def internal_status() -> grpc.Status:
    """What a caller sees of a bug: INTERNAL with no detail that could leak data."""
    return rpc_status.to_status(
        status_pb2.Status(
            code=code_pb2.INTERNAL, message="internal error; the server log has the details"
        )
    )
