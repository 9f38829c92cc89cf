"""The server's error tree. The service layer raises these; ``rpc/status.py`` maps them
to gRPC status codes in one table.

    StageConfigError
      InvalidArgument      a request field is wrong (names the field)
      NotFound             nothing stored and no fallback
      RevisionConflict     expected_revision is stale
      KeyRejected          the provider refused the key (nothing written)
      KeyUnverified        the provider could not verify a key that would replace a
                           working config, and allow_unverified was not set (nothing written)
      RolloutConflict      a rollout runs and the change must wait for its end, or no
                           rollout runs that could be promoted or aborted (nothing written)
      PermissionDenied     the caller's role may not do this
      Unauthenticated      no or unknown token
      StorageUnavailable   the database cannot be reached / written
      ResourceExhausted    the caller holds too much (streams per peer / token)
      SecretMismatch       ADMIN_SECRET_KEY cannot decrypt the stored data (start-up)
      UnsafeConfiguration  tokens/TLS malformed, or an exposure without them (start-up)
"""

from __future__ import annotations


class StageConfigError(Exception):
    """Root of every error the service raises on purpose."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidArgument(StageConfigError):
    """A request field is missing or malformed; ``field`` names it (proto field path)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.description = message


class NotFound(StageConfigError):
    """The thing asked for does not exist."""


class RevisionConflict(StageConfigError):
    """An optimistic write found the stage at another revision."""

    def __init__(self, message: str, current_revision: int) -> None:
        super().__init__(message)
        self.current_revision = current_revision


class KeyRejected(StageConfigError):
    """The provider rejected the key; the stored config was left as it was."""

    def __init__(self, message: str, cause: str) -> None:
        super().__init__(message)
        self.cause = cause


class KeyUnverified(StageConfigError):
    """The provider could neither accept nor reject a key meant to replace a working
    config, and the caller did not allow an unverified key; nothing was written.

    ``cause`` is the one-word reason the provider could not be asked (NETWORK,
    UPSTREAM, RATE_LIMIT…).
    """

    def __init__(self, message: str, cause: str) -> None:
        super().__init__(message)
        self.cause = cause


class RolloutConflict(StageConfigError):
    """The stage's rollout state forbids the call: a rollout runs (another change of the
    stage must wait for PromoteRollout or AbortRollout), or none runs (nothing to promote
    or abort), or the stage has nothing stored to roll out against. Nothing written.

    ``candidate_revision`` is the running rollout's candidate (0 when none runs)."""

    def __init__(self, message: str, candidate_revision: int = 0) -> None:
        super().__init__(message)
        self.candidate_revision = candidate_revision


class PermissionDenied(StageConfigError):
    """The caller's role may not make this call."""


class Unauthenticated(StageConfigError):
    """The caller presented no token, or one the server does not know."""


class StorageUnavailable(StageConfigError):
    """The database could not be read or written; retry later."""


class ResourceExhausted(StageConfigError):
    """The caller already holds as much as it may (e.g. open streams); retry later."""


class SecretMismatch(StageConfigError):
    """The configured secret cannot decrypt what is stored."""


class UnsafeConfiguration(StageConfigError):
    """The security settings are malformed, or would expose the service unprotected
    (a non-loopback address without tokens or TLS): the server refuses to start."""
