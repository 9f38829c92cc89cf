"""Percentiles and summaries of latency samples."""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass


def percentile(sorted_values: list[float], q: float) -> float:
    """The nearest-rank ``q``-th percentile (0 < q ≤ 100) of an ascending list."""
    if not sorted_values:
        return math.nan
    rank = max(1, math.ceil(q / 100.0 * len(sorted_values)))
    return sorted_values[min(rank, len(sorted_values)) - 1]


@dataclass(frozen=True, slots=True)
class Summary:
    """A distribution in the unit of its samples."""

    n: int
    p50: float
    p99: float
    max: float
    mean: float

    def scaled(self, factor: float) -> Summary:
        """The same distribution in another unit (e.g. ns → ms with 1e-6)."""
        return Summary(
            self.n, self.p50 * factor, self.p99 * factor, self.max * factor, self.mean * factor
        )


def summarize(values: Iterable[float]) -> Summary:
    """Median, p99, max and mean of ``values`` (NaN when empty)."""
    ordered = sorted(values)
    if not ordered:
        return Summary(0, math.nan, math.nan, math.nan, math.nan)
    return Summary(
        n=len(ordered),
        p50=percentile(ordered, 50),
        p99=percentile(ordered, 99),
        max=ordered[-1],
        mean=sum(ordered) / len(ordered),
    )
