"""Checks on what callers send, each failure an ``InvalidArgument`` naming the field.

Run before anything is read from a provider or written to the database, so bad input
changes nothing.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping

from stageconfig_server.domain import (
    ALLOWED_PROVIDERS,
    KNOWN_OPTIONS,
    REQUIRED_OPTIONS,
    ProviderKind,
    StageType,
)
from stageconfig_server.errors import InvalidArgument

MAX_MODEL_LENGTH = 256
MAX_KEY_BYTES = 4096
MAX_OPTION_LENGTH = 256
MAX_COMMENT_LENGTH = 1024
_FOLDER_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


def _has_control(value: str) -> bool:
    return any(unicodedata.category(ch) in ("Cc", "Cf", "Zl", "Zp") for ch in value)


def check_allowed(stage: StageType, provider: ProviderKind) -> None:
    """The allowed matrix, as an InvalidArgument on ``provider_kind``."""
    allowed = ALLOWED_PROVIDERS[stage]
    if provider not in allowed:
        names = ", ".join(p.value for p in allowed)
        raise InvalidArgument(
            "provider_kind",
            f"{provider.value} is not allowed for stage {stage.value}; allowed: {names}",
        )


def check_model(model: str) -> str:
    """A model id: non-empty, at most 256 characters, no control characters or spaces."""
    if not model.strip():
        raise InvalidArgument("model", "must not be empty")
    if len(model) > MAX_MODEL_LENGTH:
        raise InvalidArgument("model", f"must be at most {MAX_MODEL_LENGTH} characters")
    if _has_control(model) or model != model.strip() or " " in model:
        raise InvalidArgument("model", "must not contain spaces or control characters")
    return model


def check_api_key(api_key: str) -> str:
    """An API key: non-empty, at most 4 KB, printable ASCII, no surrounding whitespace.

    The message never repeats the key.
    """
    if not api_key:
        raise InvalidArgument(
            "api_key", "must not be empty (omit the field to keep the stored key)"
        )
    if len(api_key.encode("utf-8")) > MAX_KEY_BYTES:
        raise InvalidArgument("api_key", f"must be at most {MAX_KEY_BYTES} bytes")
    if _has_control(api_key):
        raise InvalidArgument("api_key", "must not contain control characters")
    if not api_key.isascii():
        # Keys travel in HTTP headers, which carry ASCII; no provider issues others.
        raise InvalidArgument("api_key", "must contain only ASCII characters")
    if api_key != api_key.strip():
        raise InvalidArgument("api_key", "must not start or end with whitespace")
    return api_key


def check_options(provider: ProviderKind, options: Mapping[str, str]) -> dict[str, str]:
    """The provider's options: only known names, each present when required, well formed."""
    known = KNOWN_OPTIONS.get(provider, ())
    for name, value in options.items():
        if name not in known:
            allowed = ", ".join(known) if known else "none"
            raise InvalidArgument(
                f"options.{name}", f"unknown option for {provider.value} (known: {allowed})"
            )
        if not value or len(value) > MAX_OPTION_LENGTH or _has_control(value):
            raise InvalidArgument(
                f"options.{name}",
                f"must be 1 to {MAX_OPTION_LENGTH} printable characters",
            )
    for name in REQUIRED_OPTIONS.get(provider, ()):
        if name not in options:
            raise InvalidArgument(f"options.{name}", f"is required for {provider.value}")
    folder = options.get("folder_id")
    if folder is not None and not _FOLDER_ID.match(folder):
        raise InvalidArgument(
            "options.folder_id", "must be a Yandex Cloud folder id (letters, digits)"
        )
    return dict(options)


def check_comment(comment: str) -> str:
    """A history comment: at most 1024 characters, no control characters but newlines."""
    if len(comment) > MAX_COMMENT_LENGTH:
        raise InvalidArgument("comment", f"must be at most {MAX_COMMENT_LENGTH} characters")
    if _has_control(comment.replace("\n", "")):
        raise InvalidArgument("comment", "must not contain control characters")
    return comment


def check_revision(field: str, revision: int | None) -> int | None:
    """A revision a caller names: not negative."""
    if revision is not None and revision < 0:
        raise InvalidArgument(field, "must not be negative")
    return revision
