"""Who is calling: the token's name and roles, as the servicer needs them.

The auth interceptor (``rpc/auth.py``) decides whether a call may proceed; the servicer
only asks ``caller_of(context)`` for the actor to record and whether keys may be shown.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class Role(enum.StrEnum):
    """A token's role."""

    ADMIN = "admin"
    WORKER = "worker"


@dataclass(frozen=True, slots=True)
class Caller:
    """An authenticated caller (or the anonymous caller when auth is off)."""

    name: str
    roles: frozenset[Role]

    @property
    def reveals_keys(self) -> bool:
        """Only workers ever receive plaintext keys."""
        return Role.WORKER in self.roles


ANONYMOUS = Caller("anonymous", frozenset({Role.ADMIN, Role.WORKER}))
"""The caller when no tokens are configured (loopback-only development mode)."""
