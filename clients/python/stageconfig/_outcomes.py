"""Task outcomes waiting to be reported: counts per (stage, revision), bounded.

``record_outcome`` (any thread, any worker) adds one task to the entry of the stage at
the revision it used; the reporter ``drain``s every entry into its next report. Every
bound is here, so neither a busy worker nor a long server outage makes it grow:

- at most ``MAX_ENTRIES`` distinct (stage, revision) entries wait; a new one beyond that
  drops the oldest, and the tasks it counted are added to ``dropped``;
- at most ``MAX_CAUSES`` distinct failure causes per entry, each at most
  ``MAX_CAUSE_LENGTH`` printable characters; any other cause counts as ``"other"``;
- durations are counts in the 14 fixed buckets of the contract
  (``DURATION_BUCKET_BOUNDS_SECONDS``), never a list of samples.
"""

from __future__ import annotations

import bisect
import math
import threading
from dataclasses import dataclass, field

from stageconfig._types import StageType
from stageconfig_contract.facts import DURATION_BUCKET_BOUNDS_SECONDS, DURATION_BUCKETS

MAX_ENTRIES = 64
"""Distinct (stage, revision) entries held unsent; the oldest goes first."""
PER_STAGE_IN_A_REPORT = 16
"""Entries (revisions) of one stage one report may carry: the server refuses more. The
rest waits for the next report, sent at once."""
MAX_CAUSES = 32
"""Distinct failure causes per entry (the contract's bound)."""
MAX_CAUSE_LENGTH = 64
"""Characters of one cause (the contract's bound)."""
OTHER_CAUSE = "other"
"""Where a cause beyond the bounds, or an empty or unprintable one, is counted."""
UNKNOWN_CAUSE = "unknown"
"""The cause of a failure recorded without one."""


def clean_cause(cause: str | None) -> str:
    """A cause as it may be reported: printable ASCII, at most 64 characters (longer
    ones are cut); ``unknown`` when none was given, ``other`` when nothing is left."""
    if cause is None:
        return UNKNOWN_CAUSE
    cleaned = "".join(c for c in str(cause) if " " <= c <= "~").strip()
    return cleaned[:MAX_CAUSE_LENGTH] or OTHER_CAUSE


def duration_bucket(seconds: float) -> int:
    """The index of the bucket that counts a task of ``seconds`` (0..13)."""
    return bisect.bisect_left(DURATION_BUCKET_BOUNDS_SECONDS, seconds)


@dataclass
class Outcomes:
    """The tasks one client ran with one stage at one revision, since the last report."""

    stage: StageType
    revision: int
    succeeded: int = 0
    failed: int = 0
    retried: int = 0
    failures_by_cause: dict[str, int] = field(default_factory=dict)
    duration_buckets: list[int] = field(default_factory=list)
    """Empty until a duration is recorded; then ``DURATION_BUCKETS`` counts."""

    @property
    def tasks(self) -> int:
        """How many tasks this entry counts."""
        return self.succeeded + self.failed + self.retried

    def add(self, ok: bool, retried: bool, cause: str | None, duration: float | None) -> None:
        """Count one task."""
        if retried:
            self.retried += 1
        elif ok:
            self.succeeded += 1
        else:
            self.failed += 1
            name = clean_cause(cause)
            causes = self.failures_by_cause
            # 31 named causes at most, so "other" always has the 32nd place.
            if name not in causes and name != OTHER_CAUSE and len(causes) >= MAX_CAUSES - 1:
                name = OTHER_CAUSE
            causes[name] = causes.get(name, 0) + 1
        if duration is not None:
            if not self.duration_buckets:
                self.duration_buckets = [0] * DURATION_BUCKETS
            self.duration_buckets[duration_bucket(duration)] += 1


class OutcomeLedger:
    """The outcomes recorded and not yet drained into a report (thread-safe)."""

    def __init__(self, max_entries: int = MAX_ENTRIES) -> None:
        self._max_entries = max_entries
        self._lock = threading.Lock()
        self._entries: dict[tuple[StageType, int], Outcomes] = {}
        self.dropped = 0
        """Tasks whose outcomes were discarded unsent (bounds, or a refused report)."""

    def reset_after_fork(self) -> None:
        """In a forked child: a fresh lock, and none of the parent's outcomes (the
        parent reports its own)."""
        self._lock = threading.Lock()
        self._entries = {}
        self.dropped = 0

    def record(
        self,
        stage: StageType,
        revision: int,
        *,
        ok: bool,
        retried: bool = False,
        cause: str | None = None,
        duration_seconds: float | None = None,
    ) -> None:
        """Count one task of ``stage`` run with its config at ``revision``."""
        if duration_seconds is not None:
            duration_seconds = float(duration_seconds)
            if math.isnan(duration_seconds) or duration_seconds < 0:
                raise ValueError("duration_seconds must be a number >= 0")
        key = (stage, revision)
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                if len(self._entries) >= self._max_entries:
                    oldest = next(iter(self._entries))
                    self.dropped += self._entries.pop(oldest).tasks
                entry = self._entries[key] = Outcomes(stage, revision)
            entry.add(ok, retried, cause, duration_seconds)

    def drain(self, per_stage: int = PER_STAGE_IN_A_REPORT) -> list[Outcomes]:
        """The oldest entries held, at most ``per_stage`` of each stage; they leave the
        ledger (what is left waits for the next report)."""
        taken: list[Outcomes] = []
        counts: dict[StageType, int] = {}
        with self._lock:
            for key, entry in list(self._entries.items()):
                if counts.get(entry.stage, 0) < per_stage:
                    counts[entry.stage] = counts.get(entry.stage, 0) + 1
                    taken.append(self._entries.pop(key))
        return taken

    def discard(self, entries: list[Outcomes]) -> None:
        """Count ``entries`` as dropped (a report the server refused for good)."""
        with self._lock:
            self.dropped += sum(entry.tasks for entry in entries)

    def __len__(self) -> int:
        return len(self._entries)
