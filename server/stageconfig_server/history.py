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
    try:
        padded = token + "=" * (-len(token) % 4)
        text = base64.urlsafe_b64decode(padded.encode()).decode()
        prefix, _, number = text.partition(":")
        if prefix != "before" or not number.isdigit():
            raise ValueError(text)
        return int(number)
    except (ValueError, binascii.Error, UnicodeDecodeError) as exc:
        raise InvalidArgument("page_token", "is not a token this server issued") from exc
