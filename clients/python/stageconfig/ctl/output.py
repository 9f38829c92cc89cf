"""How ``stageconfigctl`` shows things: JSON values, aligned tables, times and ages, and
one-line summaries of configs and watch events. Keys arrive masked; nothing here
unmasks."""

from __future__ import annotations

import enum
import json
import os
import shutil
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import fields, is_dataclass
from datetime import UTC, datetime
from typing import Any, TextIO

from stageconfig import ConfigSource, StageConfig
from stageconfig.admin import ChangeEvent, SnapshotEvent, StageView, WatchEvent


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
    """One JSON document on one line, flushed (``watch --json`` is read line by line)."""
    out.write(json.dumps(jsonable(value), ensure_ascii=False) + "\n")
    out.flush()


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


def show_view(view: StageView, out: TextIO) -> None:
    """One stage in full, a ``name  value`` line per field."""
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
