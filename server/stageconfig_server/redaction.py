"""Secret redaction: what takes a key out of text meant for people.

Providers sometimes echo the key in their error messages (Yandex's "Unknown api key
…"), and not always verbatim: upper-cased, reversed, split by zero-width spaces, cut
short. Those messages become status reasons, log lines and gRPC details, so a
provider's words never travel verbatim:

    redact(text, secret)      every occurrence of the exact key (the last resort,
                              used on text this server wrote itself)
    excerpt(text, secret)     what may be kept of a provider's free text: at most
                              ``MAX_EXCERPT_CHARS``, control and invisible characters
                              removed, the key in any of the altered forms above
                              removed, and every long token-like run masked

The adapters build failures with ``excerpt``; the service redacts again before it
stores or returns a reason.
"""

from __future__ import annotations

import re
import unicodedata

REDACTED = "<redacted>"
"""What replaces the key wherever it appeared."""

MASKED = "<token>"
"""What replaces a long token-like run in a provider's excerpt."""

MAX_EXCERPT_CHARS = 200
"""The most of a provider's free text that is kept (an admin needs the gist only)."""

MIN_TOKEN_RUN = 16
"""A run of ``[A-Za-z0-9_-]`` this long may be a key (or part of one): masked. Model
ids, HTTP words and error codes are shorter or carry other characters."""

_TOKEN_RUN = re.compile(rf"[A-Za-z0-9_\-]{{{MIN_TOKEN_RUN},}}")

_MIN_VARIANT_CHARS = 8
"""Altered forms of a key shorter than this are not searched (they would match words)."""

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


def visible(text: str) -> str:
    """``text`` without control, format (zero-width) or separator-line characters;
    tabs and newlines become spaces and runs of whitespace one space."""
    kept = (
        " " if ch in "\t\n\r" else ch
        for ch in text
        if ch in "\t\n\r" or unicodedata.category(ch) not in ("Cc", "Cf", "Zl", "Zp", "Co", "Cs")
    )
    return " ".join("".join(kept).split())


def key_variants(secret: str) -> set[str]:
    """The altered forms of ``secret`` a provider may echo, lower-cased: the key, the key
    reversed, the key without its first or last character (searched case-insensitively
    in text whose invisible characters were removed)."""
    key = visible(secret).lower()
    if len(key) < _MIN_VARIANT_CHARS:
        return {key} if key else set()
    forms = {key, key[:-1], key[1:]}
    return forms | {form[::-1] for form in forms}


def redact_variants(text: str, secret: str) -> str:
    """``text`` (invisible characters already removed) without ``secret`` in any of its
    ``key_variants``, matched case-insensitively."""
    variants = sorted(key_variants(secret), key=len, reverse=True)
    for _ in range(_MAX_ROUNDS):
        lowered = text.lower()
        hit = next((v for v in variants if v in lowered), None)
        if hit is None:
            return text
        start = lowered.index(hit)
        text = text[:start] + REDACTED + text[start + len(hit) :]
    return REDACTED


def mask_tokens(text: str) -> str:
    """``text`` with every run of ``MIN_TOKEN_RUN`` or more ``[A-Za-z0-9_-]``
    characters replaced by ``MASKED``."""
    return _TOKEN_RUN.sub(MASKED, text)


def excerpt(text: str, secret: str = "", *, limit: int = MAX_EXCERPT_CHARS) -> str:
    """What may be kept of a provider's free text: invisible characters removed, the
    key in any altered form removed, long token-like runs masked, at most ``limit``
    characters. Masking runs before the cut, so a cut never leaves part of a token."""
    shown = mask_tokens(redact_variants(visible(text), secret) if secret else visible(text))
    if len(shown) > limit:
        shown = shown[: limit - 1].rstrip() + "…"
    return shown


__all__ = [
    "MASKED",
    "MAX_EXCERPT_CHARS",
    "MIN_TOKEN_RUN",
    "REDACTED",
    "excerpt",
    "key_variants",
    "mask_tokens",
    "redact",
    "redact_variants",
    "visible",
]
