"""Bearer tokens with roles, and the one interceptor that enforces them.

Tokens come from ``STAGECONFIG_TOKENS`` (comma list) and ``STAGECONFIG_TOKENS_FILE``
(one a line, ``#`` comments), each entry ``name:role:secret``. A name may hold both
roles through two entries; the name is the actor the revision log records.

The interceptor decides before the request is even parsed:

- a method of StageConfigService → the role table below (no or unknown token:
  ``Unauthenticated``; a role that may not call it: ``PermissionDenied``; both answered
  through ``rpc/status.py``'s one table, like every other error);
- ``grpc.health.v1`` → always open (load balancers and probes carry no token);
- server reflection → open, or any valid token when ``STAGECONFIG_REFLECTION_REQUIRES_TOKEN``;
- anything else → passed through untouched, so an unknown method still answers
  UNIMPLEMENTED (grpcurl relies on that to fall back from reflection v1 to v1alpha).

Refusals are logged through the rate-limited ``RefusalLog`` (``rpc/refusals.py``): at
most one WARNING per kind every few seconds, every refusal counted in the metrics, so
a caller looping on a wrong token cannot flood the log.

The servicer learns who is calling through ``TokenTable.caller_of(context)``, which
reads the same ``authorization`` metadata again: no per-call state is kept.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
import stat
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import grpc
from grpc_health.v1 import health
from grpc_reflection.v1alpha import reflection

from stageconfig_server.errors import (
    PermissionDenied,
    StageConfigError,
    Unauthenticated,
    UnsafeConfiguration,
)
from stageconfig_server.rpc.identity import Caller, Role
from stageconfig_server.rpc.refusals import RefusalLog
from stageconfig_server.rpc.server import SERVICE_NAME
from stageconfig_server.rpc.status import abort_with_error, code_for

log = logging.getLogger(__name__)

AUTHORIZATION_METADATA = "authorization"
BEARER_SCHEME = "bearer"

MIN_RECOMMENDED_SECRET_LENGTH = 16
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@-]{0,63}")
# A secret travels in an HTTP/2 header: printable ASCII without spaces.
_SECRET = re.compile(r"[!-~]+")

_WORKER = frozenset({Role.WORKER})
_ADMIN = frozenset({Role.ADMIN})
_ANY_ROLE = frozenset(Role)

METHOD_ROLES: Mapping[str, frozenset[Role]] = {
    f"/{SERVICE_NAME}/{name}": roles
    for name, roles in {
        # Plaintext keys: workers only. An admin asking is a mistake worth a clear no.
        "GetActiveConfig": _WORKER,
        # Admins may watch too (stageconfigctl watch); the servicer masks their keys.
        "WatchConfig": _ANY_ROLE,
        "ListModels": _ANY_ROLE,
        "UpdateConfig": _ADMIN,
        "ListConfigs": _ADMIN,
        "RefreshModels": _ADMIN,
        "GetConfigHistory": _ADMIN,
        "RollbackConfig": _ADMIN,
        "ListWatchers": _ADMIN,
        # Reports describe a worker's own state: an admin token reporting is a mistake.
        "ReportStatus": _WORKER,
        "GetFleetStatus": _ADMIN,
        "PromoteRollout": _ADMIN,
        "AbortRollout": _ADMIN,
    }.items()
}
"""Full method name → the roles that may call it (architecture.md's role table)."""

HEALTH_PREFIX = f"/{health.SERVICE_NAME}/"
REFLECTION_PREFIXES = (
    f"/{reflection.SERVICE_NAME}/",
    "/grpc.reflection.v1.ServerReflection/",
)


@dataclass(frozen=True, slots=True)
class _Entry:
    name: str
    role: Role
    digest: bytes  # SHA-256 of the secret: compared, never the secret itself


class TokenTable:
    """The configured tokens; answers "who presents this secret?" in constant time."""

    def __init__(self, entries: Iterable[tuple[str, Role, str]]) -> None:
        table: list[_Entry] = []
        names_by_digest: dict[bytes, str] = {}
        weak: set[str] = set()
        for name, role, secret in entries:
            if len(secret) < MIN_RECOMMENDED_SECRET_LENGTH:
                weak.add(name)
            digest = hashlib.sha256(secret.encode("ascii")).digest()
            other = names_by_digest.setdefault(digest, name)
            if other != name:
                # The actor in the revision log must be unambiguous.
                raise UnsafeConfiguration(
                    f"tokens {other!r} and {name!r} share one secret: give each name its own"
                )
            entry = _Entry(name, role, digest)
            if entry not in table:
                table.append(entry)
        self._entries = tuple(table)
        self._weak = frozenset(weak)

    @classmethod
    def parse(cls, tokens: str | None, tokens_file: Path | None) -> TokenTable:
        """Tokens from the STAGECONFIG_TOKENS value and the STAGECONFIG_TOKENS_FILE file.

        Raises UnsafeConfiguration for a malformed entry or an unreadable file; the
        message names the variable and the entry's position, never the secret.
        """
        entries: list[tuple[str, Role, str]] = []
        if tokens:
            for index, raw in enumerate(tokens.split(","), start=1):
                if raw.strip():
                    entries.append(_parse_entry(raw, f"STAGECONFIG_TOKENS entry {index}"))
        if tokens_file is not None:
            for number, raw in enumerate(_read_tokens_file(tokens_file), start=1):
                if raw.strip() and not raw.lstrip().startswith("#"):
                    entries.append(_parse_entry(raw, f"STAGECONFIG_TOKENS_FILE line {number}"))
        return cls(entries)

    def __bool__(self) -> bool:
        return bool(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        described = ", ".join(f"{e.name}:{e.role.value}" for e in self._entries)
        return f"TokenTable({described})"

    @property
    def names(self) -> frozenset[str]:
        """Every configured token name."""
        return frozenset(e.name for e in self._entries)

    @property
    def weak_names(self) -> frozenset[str]:
        """Names of tokens whose secret is shorter than the recommended length."""
        return self._weak

    def lookup(self, secret: str) -> Caller | None:
        """The caller presenting ``secret``, or None when no token has it.

        Every entry is compared, with ``hmac.compare_digest`` on fixed-length digests,
        whatever matches: the time taken says nothing about which secret (or which
        prefix of one) is configured.
        """
        presented = hashlib.sha256(secret.encode("utf-8", "surrogateescape")).digest()
        name = ""
        roles: set[Role] = set()
        for entry in self._entries:
            if hmac.compare_digest(presented, entry.digest):
                name = entry.name
                roles.add(entry.role)
        return Caller(name, frozenset(roles)) if roles else None

    def caller_of(self, context: grpc.aio.ServicerContext[Any, Any]) -> Caller:
        """The servicer's caller resolver: who made this (already admitted) call.

        A call the interceptor did not admit cannot reach the servicer; should one ever
        do so, it gets a caller with no roles, which reveals nothing.
        """
        secret = bearer_secret(context.invocation_metadata() or ())
        caller = self.lookup(secret) if secret is not None else None
        return caller if caller is not None else NOBODY


NOBODY = Caller("unauthenticated", frozenset())
"""The caller of a call with no valid token (never admitted when tokens are configured)."""


def _read_tokens_file(path: Path) -> list[str]:
    try:
        text = path.read_text(encoding="utf-8")
        mode = path.stat().st_mode
    except (OSError, UnicodeDecodeError) as exc:
        raise UnsafeConfiguration(
            f"STAGECONFIG_TOKENS_FILE {path} cannot be read: {exc.__class__.__name__}"
        ) from exc
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        log.warning(
            "STAGECONFIG_TOKENS_FILE %s is readable by other users (mode %o): chmod 600 it",
            path,
            stat.S_IMODE(mode),
        )
    return text.splitlines()


def _parse_entry(raw: str, where: str) -> tuple[str, Role, str]:
    # The message never quotes the entry: it holds a secret.
    parts = raw.strip().split(":", 2)
    if len(parts) != 3:
        raise UnsafeConfiguration(f"{where}: expected name:role:secret")
    name, role_text, secret = (p.strip() for p in parts)
    if not _NAME.fullmatch(name):
        raise UnsafeConfiguration(
            f"{where}: the name must be 1-64 letters, digits, '.', '_', '@' or '-'"
        )
    try:
        role = Role(role_text.lower())
    except ValueError:
        allowed = " or ".join(r.value for r in Role)
        raise UnsafeConfiguration(f"{where} ({name}): the role must be {allowed}") from None
    if not _SECRET.fullmatch(secret):
        raise UnsafeConfiguration(
            f"{where} ({name}): the secret must be non-empty printable ASCII without spaces"
        )
    return name, role, secret


def bearer_secret(metadata: Iterable[tuple[str, str | bytes]]) -> str | None:
    """The secret of the one ``authorization: Bearer <secret>`` entry, else None.

    Several authorization entries are ambiguous and count as none.
    """
    values = [v for k, v in metadata if k.lower() == AUTHORIZATION_METADATA]
    if len(values) != 1:
        return None
    value = values[0]
    if isinstance(value, bytes):
        value = value.decode("latin-1")
    scheme, _, secret = value.strip().partition(" ")
    secret = secret.strip()
    if scheme.lower() != BEARER_SCHEME or not secret:
        return None
    return secret


@dataclass(frozen=True, slots=True)
class _Rejection:
    error: StageConfigError
    """What the caller is told (its status comes from ``rpc/status.py``)."""
    log_reason: str
    """What the server log says (it may name the token; the caller's message may not)."""


if TYPE_CHECKING:
    _ServerInterceptor = grpc.aio.ServerInterceptor[Any, Any]
else:  # the runtime class is not generic; grpc-stubs' is
    _ServerInterceptor = grpc.aio.ServerInterceptor


class AuthInterceptor(_ServerInterceptor):
    """Admits or rejects every call (unary and streaming) by token and role."""

    def __init__(
        self,
        tokens: TokenTable,
        *,
        reflection_requires_token: bool = False,
        refusals: RefusalLog | None = None,
    ) -> None:
        if not tokens:
            raise ValueError("AuthInterceptor needs at least one token")
        self._tokens = tokens
        self._reflection_requires_token = reflection_requires_token
        self._refusals = refusals if refusals is not None else RefusalLog(log)

    def required_roles(self, method: str) -> frozenset[Role] | None:
        """The roles that may call ``method``; None when it is open to everyone."""
        if method in METHOD_ROLES:
            return METHOD_ROLES[method]
        if method.startswith(HEALTH_PREFIX):
            return None
        if method.startswith(REFLECTION_PREFIXES):
            return _ANY_ROLE if self._reflection_requires_token else None
        if method.startswith(f"/{SERVICE_NAME}/"):
            # A method of our service missing from the table: deny rather than guess.
            return frozenset()
        return None

    async def intercept_service(
        self,
        continuation: Callable[
            [grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler[Any, Any]]
        ],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any]:
        """Pass admitted and unknown calls on; swap a rejected call's handler for one that
        aborts with the reason (same streaming shape, the request left unparsed)."""
        # None (the stubs do not say so) when no service has the method: grpc then
        # answers UNIMPLEMENTED, which is what an unknown method must get.
        handler: grpc.RpcMethodHandler[Any, Any] | None = await continuation(handler_call_details)
        method = handler_call_details.method
        required = self.required_roles(method)
        if handler is None or required is None:
            return handler  # type: ignore[return-value]
        rejection = self._check(handler_call_details, method, required)
        if rejection is None:
            return handler
        return _rejecting_handler(handler, method, rejection, self._refusals)

    def _check(
        self, details: grpc.HandlerCallDetails, method: str, required: frozenset[Role]
    ) -> _Rejection | None:
        secret = bearer_secret(details.invocation_metadata or ())
        if secret is None:
            return _Rejection(
                Unauthenticated(
                    "missing bearer token: send the metadata 'authorization: Bearer <token>'"
                ),
                "no bearer token",
            )
        caller = self._tokens.lookup(secret)
        if caller is None:
            return _Rejection(Unauthenticated("unknown token"), "unknown token")
        if caller.roles & required:
            return None
        short = method.rsplit("/", 1)[-1]
        needed = " or ".join(sorted(r.value for r in required)) or "a role no token has"
        held = ", ".join(sorted(r.value for r in caller.roles))
        return _Rejection(
            PermissionDenied(f"{short} needs the {needed} role; token {caller.name!r} has {held}"),
            f"token {caller.name!r} ({held}) may not call it",
        )


def _rejecting_handler(
    handler: grpc.RpcMethodHandler[Any, Any],
    method: str,
    rejection: _Rejection,
    refusals: RefusalLog,
) -> grpc.RpcMethodHandler[Any, Any]:
    # grpc.aio dispatches on the handler's streaming flags, so the replacement keeps
    # them; no request deserializer: an unauthenticated request is never parsed.
    kind = (
        "unauthenticated" if isinstance(rejection.error, Unauthenticated) else "permission_denied"
    )

    async def reject(_request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> None:
        refusals.refused(
            kind,
            logging.WARNING,
            "rejected %s from %s: %s (%s)",
            method,
            context.peer(),
            rejection.log_reason,
            code_for(rejection.error).name,
        )
        await abort_with_error(context, rejection.error)

    factory: Any
    if handler.request_streaming and handler.response_streaming:
        factory = grpc.stream_stream_rpc_method_handler
    elif handler.request_streaming:
        factory = grpc.stream_unary_rpc_method_handler
    elif handler.response_streaming:
        factory = grpc.unary_stream_rpc_method_handler
    else:
        factory = grpc.unary_unary_rpc_method_handler
    result: grpc.RpcMethodHandler[Any, Any] = factory(reject)
    return result
