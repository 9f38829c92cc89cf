"""``redaction.excerpt`` and ``redact_variants``: what is left of a provider's words."""

from __future__ import annotations

import pytest

from stageconfig_server.redaction import (
    MASKED,
    MAX_EXCERPT_CHARS,
    REDACTED,
    excerpt,
    redact_variants,
    visible,
)

KEY = "sk.host.0123.4567.89ab.cdef.WXYZ"


@pytest.mark.parametrize(
    "echo",
    [
        KEY,
        KEY.upper(),
        KEY.lower(),
        KEY[::-1],
        KEY[:-1],
        KEY[1:],
        "\u200b".join(KEY),
        "\u2060".join(KEY.upper()[::-1]),
    ],
    ids=["exact", "upper", "lower", "reversed", "minus_last", "minus_first", "zwsp", "wj_up_rev"],
)
def test_every_altered_form_of_the_key_is_removed(echo: str) -> None:
    shown = excerpt(f"Unknown api key '{echo}' (request 7)", KEY)
    assert REDACTED in shown
    assert "0123.4567" not in shown.replace("\u200b", "")
    assert "7654.3210" not in shown


def test_control_and_invisible_characters_are_removed() -> None:
    shown = excerpt("bad\x1b]0;title\x07 key\u202e here\r\nnext\ttab\x00")
    assert shown == "bad]0;title key here next tab"


def test_long_token_runs_are_masked_before_the_cut() -> None:
    token = "A" * 15 + "b" * 200
    shown = excerpt(f"key {token} rejected")
    assert shown == f"key {MASKED} rejected"
    assert excerpt("x" * 15 + " ok") == "x" * 15 + " ok"


def test_an_excerpt_is_bounded() -> None:
    shown = excerpt("word " * 500)
    assert len(shown) <= MAX_EXCERPT_CHARS
    assert shown.endswith("…")


def test_short_keys_are_matched_without_case_but_not_reversed_or_cut() -> None:
    # Under 8 characters, a reversed or cut form would match ordinary words.
    assert redact_variants("abc ABC cba ab", "abc") == f"{REDACTED} {REDACTED} cba ab"


def test_visible_keeps_ordinary_text() -> None:
    assert visible("Incorrect API key provided.") == "Incorrect API key provided."
