"""The snapshot store (immutable snapshots, swapped whole, reporting what changed) and
the reconnect backoff (full jitter, exponential, capped)."""

from __future__ import annotations

import random
from types import MappingProxyType

import pytest

from stageconfig import (
    ConfigSource,
    ConfigStatus,
    ProviderKind,
    SnapshotSource,
    StageChange,
    StageConfig,
    StageType,
)
from stageconfig._backoff import Backoff
from stageconfig._store import SnapshotStore


def config(stage: StageType, model: str, revision: int) -> StageConfig:
    return StageConfig(
        stage_type=stage,
        provider_kind=ProviderKind.SPEECHKIT if stage is StageType.VOICE else ProviderKind.OPENAI,
        api_key="key-0123456789",
        model=model,
        revision=revision,
        status=ConfigStatus.ACTIVE,
        source=ConfigSource.DATABASE,
    )


def test_writes_swap_whole_snapshots_and_report_changed_stages() -> None:
    store = SnapshotStore([StageType.POEM, StageType.VOICE])
    assert store.current is None
    poem1, voice2 = config(StageType.POEM, "gpt-4o", 1), config(StageType.VOICE, "alena", 2)
    song = config(StageType.SONG, "V5", 2)  # not watched: ignored

    first = store.replace(2, [poem1, voice2, song], SnapshotSource.SNAPSHOT)
    assert first.changes == (
        StageChange(StageType.POEM, None, poem1),
        StageChange(StageType.VOICE, None, voice2),
    )
    held = store.current
    assert held is first.snapshot
    assert isinstance(held.configs, MappingProxyType)

    voice3 = config(StageType.VOICE, "zahar", 3)
    second = store.apply(3, voice3)
    assert second is not None
    assert second.changes == (StageChange(StageType.VOICE, voice2, voice3),)
    assert held.configs[StageType.VOICE] is voice2  # the old snapshot never changes
    assert store.current is not None
    assert store.current.source is SnapshotSource.CHANGE

    assert store.apply(3, voice3) is None  # not newer: a duplicate
    assert store.apply(4, config(StageType.CLIP, "pika", 4)) is None  # not watched
    moved = store.advance(9)
    assert moved is not None
    assert (moved.snapshot.revision, moved.changes) == (9, ())
    assert store.advance(9) is None

    gone = store.replace(10, [voice3], SnapshotSource.SNAPSHOT)
    assert gone.changes == (StageChange(StageType.POEM, poem1, None),)


def test_backoff_is_full_jitter_exponential_and_capped() -> None:
    backoff = Backoff(0.5, 30.0, rng=random.Random(7))
    caps = []
    for _ in range(10):
        cap = backoff.cap()
        delay = backoff.next_delay()
        assert 0.0 <= delay <= cap
        caps.append(cap)
    assert caps == [0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0, 30.0, 30.0]
    backoff.reset()
    assert backoff.cap() == 0.5
    # Full jitter spreads a fleet: draws cover the whole range, not just the top.
    draws = [Backoff(0.5, 30.0, rng=random.Random(seed)).next_delay() for seed in range(200)]
    assert min(draws) < 0.05
    assert max(draws) > 0.45
    with pytest.raises(ValueError, match="initial"):
        Backoff(0, 1)
