"""Login sessions of the admin page: kept in this process, named by a signed cookie.

The cookie carries only a random session id and its HMAC-SHA256 signature, never the
admin token: the token a person logged in with stays in server memory (inside the
session's ``AdminClient``) and never travels back to the browser. The cookie is
HttpOnly and SameSite=Strict (Secure when the page is served over HTTPS); every form
carries the session's CSRF token, checked on every POST.

Sessions end after ``idle_seconds`` without a request, after ``max_age_seconds`` in
any case, at logout, and when the process restarts (everyone logs in again).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from stageconfig.admin import AdminClient

COOKIE_NAME = "stageconfig_session"
DEFAULT_IDLE_SECONDS = 8 * 3600
DEFAULT_MAX_AGE_SECONDS = 24 * 3600
MAX_SESSIONS = 10_000
"""Bound on sessions held (anonymous visitors get one for the login form's CSRF token)."""


@dataclass(frozen=True, slots=True)
class Flash:
    """A one-time message shown on the next page (after a redirect)."""

    stage: str
    """The stage section it belongs to; empty for the page header."""
    text: str
    kind: str = "ok"
    """``ok`` or ``error``."""


@dataclass(eq=False)
class Session:
    """One browser's session; ``client`` is set once the person has logged in."""

    id: str
    csrf_token: str
    created: float
    last_seen: float
    client: AdminClient | None = None
    flashes: list[Flash] = field(default_factory=list)

    @property
    def logged_in(self) -> bool:
        """Whether an admin token was verified for this session."""
        return self.client is not None

    def take_flashes(self) -> list[Flash]:
        """The pending messages, forgetting them."""
        flashes, self.flashes = self.flashes, []
        return flashes

    def csrf_ok(self, submitted: str | None) -> bool:
        """Whether a form's CSRF token is this session's (constant-time)."""
        return submitted is not None and hmac.compare_digest(
            submitted.encode(), self.csrf_token.encode()
        )


class SessionStore:
    """Sessions by id, with signed cookie values and expiry.

    Used from the event loop thread only (handlers run there; only the gRPC calls go
    to worker threads), so it needs no lock.
    """

    def __init__(
        self,
        secret: bytes,
        *,
        idle_seconds: float = DEFAULT_IDLE_SECONDS,
        max_age_seconds: float = DEFAULT_MAX_AGE_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if len(secret) < 16:
            raise ValueError("the session secret must be at least 16 bytes")
        # Domain-separated, so the configured secret is never used directly as a MAC key.
        self._key = hmac.new(secret, b"stageconfig-web session cookie v1", hashlib.sha256).digest()
        self._idle = idle_seconds
        self._max_age = max_age_seconds
        self._clock = clock
        self._sessions: dict[str, Session] = {}

    def _sign(self, session_id: str) -> str:
        mac = hmac.new(self._key, session_id.encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(mac).decode().rstrip("=")

    def cookie_value(self, session: Session) -> str:
        """What the cookie holds: ``<id>.<signature>``."""
        return f"{session.id}.{self._sign(session.id)}"

    def from_cookie(self, value: str | None) -> Session | None:
        """The live session a cookie names; None when unsigned, forged or expired."""
        if not value or "." not in value:
            return None
        session_id, _, signature = value.partition(".")
        if not hmac.compare_digest(signature.encode(), self._sign(session_id).encode()):
            return None
        session = self._sessions.get(session_id)
        if session is None:
            return None
        now = self._clock()
        if now - session.last_seen > self._idle or now - session.created > self._max_age:
            self.drop(session)
            return None
        session.last_seen = now
        return session

    def create(self) -> Session:
        """A new anonymous session with its own CSRF token."""
        self._prune()
        now = self._clock()
        session = Session(
            id=secrets.token_urlsafe(32),
            csrf_token=secrets.token_urlsafe(32),
            created=now,
            last_seen=now,
        )
        self._sessions[session.id] = session
        return session

    def login(self, anonymous: Session, client: AdminClient) -> Session:
        """A fresh session (new id and CSRF token) holding ``client``; the anonymous one
        ends, so an id planted before login is worth nothing after it."""
        self.drop(anonymous)
        session = self.create()
        session.client = client
        return session

    def drop(self, session: Session) -> None:
        """End a session and close its client."""
        self._sessions.pop(session.id, None)
        if session.client is not None:
            session.client.close()
            session.client = None

    def close(self) -> None:
        """End every session (at shutdown)."""
        for session in list(self._sessions.values()):
            self.drop(session)

    def _prune(self) -> None:
        now = self._clock()
        for session in list(self._sessions.values()):
            if now - session.last_seen > self._idle or now - session.created > self._max_age:
                self.drop(session)
        if len(self._sessions) >= MAX_SESSIONS:
            # Anonymous sessions go first, oldest first: a flood of visitors to the login
            # page must not log anybody out.
            victims = sorted(self._sessions.values(), key=lambda s: (s.logged_in, s.last_seen))
            for session in victims[: len(self._sessions) - MAX_SESSIONS + 1]:
                self.drop(session)
