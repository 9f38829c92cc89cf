"""GetConfigHistory's paging: pages of the revision log, newest first, with opaque
page tokens. Entries are the domain's ``HistoryEntry``: no key in any form but a
fingerprint."""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass

from stageconfig_server.domain import HistoryEntry, StageType
from stageconfig_server.errors import InvalidArgument
from stageconfig_server.store import ConfigStore

MAX_HISTORY_PAGE = 100
DEFAULT_HISTORY_PAGE = 20
MAX_REVISION = 2**63 - 1
"""Revisions are SQL BIGINTs: a token naming a larger one was not issued here."""
_MAX_PAGE_TOKEN_LENGTH = 64


@dataclass(frozen=True, slots=True)
class HistoryPage:
    """A page of the revision log, newest first."""

    entries: tuple[HistoryEntry, ...]
    next_page_token: str
    """Pass back for the next page; "" on the last one."""


async def read_history(
    store: ConfigStore, stage: StageType | None, page_size: int, page_token: str
) -> HistoryPage:
    """A page of the revision log (one stage's, or every stage's), newest first."""
    if page_size < 0:
        raise InvalidArgument("page_size", "must not be negative")
    size = min(page_size or DEFAULT_HISTORY_PAGE, MAX_HISTORY_PAGE)
    before = _decode_page_token(page_token) if page_token else None
    entries = list(await store.history(stage, before, size + 1))
    more = len(entries) > size
    entries = entries[:size]
    token = _encode_page_token(entries[-1].revision) if more and entries else ""
    return HistoryPage(tuple(entries), token)


def _encode_page_token(revision: int) -> str:
    return base64.urlsafe_b64encode(f"before:{revision}".encode()).decode().rstrip("=")


def _decode_page_token(token: str) -> int:
    """The revision a page token names; InvalidArgument on ``page_token`` for anything
    this server could not have issued (bad encoding, a number that does not fit)."""
    try:
        if len(token) > _MAX_PAGE_TOKEN_LENGTH:
            raise ValueError("too long")
        padded = token + "=" * (-len(token) % 4)
        text = base64.urlsafe_b64decode(padded.encode("ascii")).decode("ascii")
        prefix, _, number = text.partition(":")
        # isdecimal + ASCII: int() also takes other scripts' digits and underscores.
        if prefix != "before" or not (number.isascii() and number.isdecimal()):
            raise ValueError("not a page token")
        revision = int(number)
        if not 0 < revision <= MAX_REVISION:
            raise ValueError("out of range")
        return revision
    except (ValueError, binascii.Error, UnicodeError) as exc:
        raise InvalidArgument("page_token", "is not a token this server issued") from exc
