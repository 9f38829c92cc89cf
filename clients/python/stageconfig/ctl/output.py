"""How ``stageconfigctl`` shows things: JSON values, aligned tables, times and ages, and
one-line summaries of configs and watch events. Keys arrive masked; nothing here
unmasks.

What the server sends is not trusted to be printable: model names come from providers,
reasons and comments from admins, client ids from workers. ``printable`` escapes every
control character (C0 such as ESC and BEL, DEL, C1), bidi override and other format
character, and line/paragraph separator as ``\\xNN`` / ``\\uNNNN``, so nothing a server
relays can move the cursor, recolour, retitle or reorder an admin's terminal.
``SafeOutput`` applies it to every line written (each printer, present and future,
writes through it: ``main`` hands it to the commands); ``print_json`` escapes the same
characters as JSON ``\\u`` escapes, so ``--json`` output stays valid JSON.
"""

from __future__ import annotations

import enum
import json
import os
import shutil
import unicodedata
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import fields, is_dataclass
from datetime import UTC, datetime
from typing import Any, TextIO

from stageconfig import ConfigSource, StageConfig
from stageconfig.admin import ChangeEvent, SnapshotEvent, StageView, WatchEvent


def _unprintable(ch: str) -> bool:
    return unicodedata.category(ch) in _UNPRINTABLE_CATEGORIES


_UNPRINTABLE_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Co", "Zl", "Zp"})
"""Control (C0, DEL, C1), format (bidi overrides, zero-width), surrogate, private-use,
line and paragraph separators."""


def _escape(code: int) -> str:
    if code < 0x100:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


def _json_escape(code: int) -> str:
    if code < 0x10000:
        return f"\\u{code:04x}"
    code -= 0x10000  # JSON spells characters beyond the BMP as a surrogate pair
    return f"\\u{0xD800 + (code >> 10):04x}\\u{0xDC00 + (code & 0x3FF):04x}"


def _replace_unprintable(text: str, escape: Callable[[int], str]) -> str:
    if text.isprintable():  # the common case, in C: no Cc, Cf, Zl, Zp at all
        return text
    return "".join(escape(ord(ch)) if _unprintable(ch) else ch for ch in text)


def printable(text: str) -> str:
    """``text`` with every unprintable character escaped (``\\x1b``, ``\\u202e``)."""
    return _replace_unprintable(text, _escape)


class SafeOutput:
    """A text stream that writes ``printable`` text: line breaks pass, nothing else that
    could drive a terminal does. Everything else is delegated to the wrapped stream."""

    def __init__(self, out: TextIO) -> None:
        self._out = out

    def write(self, text: str) -> int:
        """Write ``text`` with every character but ``\\n`` made printable."""
        self._out.write("\n".join(printable(part) for part in text.split("\n")))
        return len(text)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._out, name)


def safe_output(out: TextIO) -> TextIO:
    """``out`` wrapped in ``SafeOutput`` (typed as the stream the printers expect)."""
    wrapped: Any = SafeOutput(out)
    return wrapped  # type: ignore[no-any-return]


def jsonable(value: Any) -> Any:
    """Dataclasses, enums, datetimes and mappings as JSON values."""
    if is_dataclass(value) and not isinstance(value, type):
        return {f.name: jsonable(getattr(value, f.name)) for f in fields(value)}
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    return value


def print_json(value: Any, out: TextIO) -> None:
    """One JSON document on one line, flushed (``watch --json`` is read line by line).

    Unprintable characters become JSON ``\\uNNNN`` escapes (json escapes C0 itself;
    DEL, C1 and format characters it would leave raw): still the same JSON value.
    """
    out.write(json_text(value) + "\n")
    out.flush()


def json_text(value: Any) -> str:
    """``value`` as one line of JSON with every unprintable character escaped."""
    text = json.dumps(jsonable(value), ensure_ascii=False)
    # Outside strings JSON has only ASCII punctuation, so every match is inside one.
    return _replace_unprintable(text, _json_escape)


def table(
    headers: Sequence[str],
    rows: Iterable[Sequence[str]],
    out: TextIO,
    *,
    width: int | None = None,
    cut: Mapping[int, int] | None = None,
) -> None:
    """Columns padded to their widest cell. With ``width``, the columns numbered in
    ``cut`` are narrowed until a line fits, in proportion to their weight there (each to
    no less than ``MIN_CUT_WIDTH``), their cells shortened with ``…``."""
    all_rows = [list(headers), *([str(c) for c in row] for row in rows)]
    widths = [max(len(row[i]) for row in all_rows) for i in range(len(headers))]
    if width is not None:
        _narrow(widths, width, cut or {})
    for row in all_rows:
        cells = (short(c, w).ljust(w) for c, w in zip(row, widths, strict=True))
        out.write("  ".join(cells).rstrip() + "\n")


MIN_CUT_WIDTH = 8
"""The narrowest a cut column becomes: enough for a word and ``…``."""


def _narrow(widths: list[int], width: int, cut: Mapping[int, int]) -> None:
    excess = sum(widths) + 2 * (len(widths) - 1) - width
    while excess > 0:
        shrinkable = [i for i in cut if widths[i] > MIN_CUT_WIDTH]
        if not shrinkable:
            return  # the other columns alone are wider: nothing more to cut
        widest = max(shrinkable, key=lambda i: widths[i] / cut[i])
        widths[widest] -= 1
        excess -= 1


def terminal_width(out: TextIO) -> int | None:
    """How wide ``out``'s lines may be: ``COLUMNS`` when set, the terminal's width when
    ``out`` is one; None (no limit) for a pipe or a file, which ``grep`` reads whole."""
    if os.environ.get("COLUMNS", "").isdigit() or out.isatty():
        return shutil.get_terminal_size().columns
    return None


def when(value: datetime | None) -> str:
    """A UTC time to the second, ``-`` for none."""
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%SZ") if value else "-"


def age(value: datetime | None, now: datetime) -> str:
    """How long ago, in the largest whole unit (``2h``), ``-`` for never."""
    if value is None:
        return "-"
    seconds = max(0, int((now - value).total_seconds()))
    for unit, size in (("d", 86_400), ("h", 3_600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def short(text: str, limit: int = 60) -> str:
    """``text`` cut to ``limit`` characters with an ellipsis."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def config_line(config: StageConfig) -> str:
    """A config in one line: stage, provider, model, status, masked key (and reason)."""
    line = (
        f"{config.stage_type.value} {config.provider_kind.value} {config.model} "
        f"{config.status.value} key {config.api_key or '-'}"
    )
    return f"{line} ({config.status_reason})" if config.status_reason else line


UNKNOWN_PROVIDER_REASON = "a provider kind newer than this client: upgrade stageconfig"
"""What stands in a stage's reason when its provider kind is unknown to this client."""


def revision_cell(view: StageView) -> str:
    """The revision column: ``fallback`` for the server's legacy env."""
    return "fallback" if view.source is ConfigSource.FALLBACK else str(view.revision)


def status_row(view: StageView, now: datetime) -> list[str]:
    """One stage's row of ``status``: stage, provider, model, status, revision, cache
    age, key, reason."""
    config = view.config
    if config is None:
        if view.unknown_provider_kind:
            middle = ["-", "-", revision_cell(view), "-", "-"]  # model … key: unreadable
            return [view.stage_type.value, view.provider, *middle, UNKNOWN_PROVIDER_REASON]
        return [view.stage_type.value, "-", "-", "UNCONFIGURED", "-", "-", "-", ""]
    reason = config.status_reason
    if view.source is ConfigSource.FALLBACK:
        reason = reason or "from the server's legacy env (not stored)"
    return [
        view.stage_type.value,
        config.provider_kind.value,
        config.model,
        config.status.value,
        revision_cell(view),
        age(config.models_cache_updated_at, now),
        config.api_key or "-",
        short(reason),
    ]


def show_view(view: StageView, out: TextIO, extra: Sequence[tuple[str, str]] = ()) -> None:
    """One stage in full, a ``name  value`` line per field (``extra`` after the config's,
    e.g. its fallback routes)."""
    config = view.config
    lines = [("stage", view.stage_type.value), ("source", view.source.value)]
    if config is not None:
        lines += [
            ("provider", config.provider_kind.value),
            ("model", config.model),
            ("key", config.api_key or "-"),
            ("key fingerprint", config.api_key_fingerprint or "-"),
            ("status", config.status.value),
            ("reason", config.status_reason or "-"),
            ("revision", str(view.revision)),
            ("updated", when(config.updated_at)),
            ("options", ", ".join(f"{k}={v}" for k, v in sorted(config.options.items())) or "-"),
            ("models cached", when(config.models_cache_updated_at)),
        ]
    elif view.unknown_provider_kind:
        lines += [
            ("provider", view.provider),
            ("reason", UNKNOWN_PROVIDER_REASON),
            ("revision", str(view.revision)),
        ]
    lines += extra
    lines += [
        ("allowed providers", ", ".join(p.value for p in view.allowed_providers)),
        ("models", ", ".join(view.models) or "-"),
    ]
    width = max(len(name) for name, _ in lines)
    for name, value in lines:
        out.write(f"{name.ljust(width)}  {value}\n")


def event_line(event: WatchEvent) -> str:
    """A watch event in one line, stamped with the time it arrived."""
    now = when(datetime.now(UTC))
    if isinstance(event, SnapshotEvent):
        stages = "; ".join(config_line(c) for c in event.configs) or "no stage configured"
        return f"{now} snapshot revision {event.revision}: {stages}"
    if isinstance(event, ChangeEvent):
        return (
            f"{now} change revision {event.revision} ({event.reason.value}): "
            f"{config_line(event.config)}"
        )
    return f"{now} heartbeat head revision {event.head_revision}"
