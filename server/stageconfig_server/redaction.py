"""Secret redaction: the one function that takes a key out of text meant for people.

Providers sometimes echo the key in their error messages (Yandex's "Unknown api key
…"), and those messages become status reasons, log lines and gRPC details. Everything
that may carry a provider's words passes through ``redact`` first: the adapters when
they build a failure, and the service again before it stores or returns a reason.
"""

from __future__ import annotations

REDACTED = "<redacted>"
"""What replaces the key wherever it appeared."""

_MAX_ROUNDS = 8
"""Replacing can join text around the marker into a new occurrence (a key that ends
where the marker begins); a few rounds settle every real case, and past them the whole
text is withheld rather than risk a leak."""


def redact(text: str, secret: str) -> str:
    """``text`` with every occurrence of ``secret`` (and of ``secret`` without its
    surrounding whitespace) replaced by ``REDACTED``; never returns text containing
    either, even for a key short enough to occur inside the marker itself."""
    variants = sorted({v for v in (secret, secret.strip()) if v}, key=len, reverse=True)
    if not variants:
        return text
    marker = REDACTED if not any(v in REDACTED for v in variants) else ""
    for _ in range(_MAX_ROUNDS):
        if not any(v in text for v in variants):
            return text
        for variant in variants:
            text = text.replace(variant, marker)
    return text if not any(v in text for v in variants) else REDACTED if marker else ""
