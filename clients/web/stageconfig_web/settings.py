"""``WebSettings``: how the admin page reaches the stageconfig server and protects its
sessions."""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field

from stageconfig.tls import TlsConfig


@dataclass(frozen=True, slots=True)
class WebSettings:
    """How the page reaches the server and protects its sessions."""

    target: str
    """The stageconfig server, host:port."""
    tls: TlsConfig | None = None
    """TLS (and mTLS) towards the server; None: plaintext."""
    session_secret: bytes = field(default_factory=lambda: secrets.token_bytes(32), repr=False)
    """Signs session cookies. Sessions live in this process's memory, so a random
    secret per process loses nothing."""
    secure_cookies: bool = False
    """Mark the cookie Secure (serve over HTTPS, e.g. behind a TLS proxy)."""
    call_timeout: float = 30.0
    """Deadline of each gRPC call."""
