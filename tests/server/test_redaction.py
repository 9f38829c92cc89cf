"""One redaction for every provider message: the key never survives it."""

from __future__ import annotations

import pytest

from stageconfig_server.domain import ConfigStatus, StatusCause
from stageconfig_server.providers.base import provider_failure
from stageconfig_server.redaction import REDACTED, redact


@pytest.mark.parametrize(
    ("text", "secret", "expected"),
    [
        ("Unknown api key sk-abc123", "sk-abc123", f"Unknown api key {REDACTED}"),
        ("key ' sk-abc123 ' refused", " sk-abc123 ", f"key '{REDACTED}' refused"),
        ("refused sk-abc123.", " sk-abc123\n", f"refused {REDACTED}."),
        ("nothing to hide", "sk-abc123", "nothing to hide"),
        ("empty secret", "", "empty secret"),
    ],
)
def test_the_key_and_its_stripped_variant_are_replaced(
    text: str, secret: str, expected: str
) -> None:
    assert redact(text, secret) == expected


@pytest.mark.parametrize(
    ("text", "secret"),
    [
        ("the key was 'red' or 'redacted'", "red"),  # the key occurs inside the marker
        ("aa<<b", "a<"),  # replacing joins text into a new occurrence
        ("xxxxxxxxxx", "x"),
    ],
)
def test_the_key_never_survives(text: str, secret: str) -> None:
    assert secret not in redact(text, secret)


def test_provider_failures_use_the_one_redaction() -> None:
    key = "AQVN-echoed-key-0123456789"
    failure = provider_failure(
        ConfigStatus.INVALID,
        StatusCause.AUTH,
        provider="YANDEX_GPT",
        api_key=key,
        detail=f"Unknown api key '{key}'",
    )
    assert key not in failure.message
    assert REDACTED in failure.message
