"""The snapshot store (immutable snapshots, swapped whole, reporting what changed), the
reconnect backoff (full jitter, exponential, capped) and the timing options."""

from __future__ import annotations

import random
from types import MappingProxyType

import pytest

from stageconfig import (
    ConfigClient,
    ConfigSource,
    ConfigStatus,
    ProviderKind,
    SnapshotSource,
    StageChange,
    StageConfig,
    StageType,
    TimingOptions,
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


def test_a_snapshot_keeps_the_last_config_of_a_stage_it_cannot_read() -> None:
    store = SnapshotStore([StageType.POEM, StageType.VOICE])
    poem, voice = config(StageType.POEM, "gpt-4o", 1), config(StageType.VOICE, "alena", 2)
    store.replace(2, [poem, voice], SnapshotSource.SNAPSHOT)

    # POEM's new config is unreadable (a newer server): it keeps the one it had.
    update = store.replace(
        5, [voice], SnapshotSource.SNAPSHOT, keep=[StageType.POEM, StageType.SONG]
    )
    assert update.changes == ()
    assert update.snapshot.revision == 5
    assert update.snapshot.configs == {StageType.POEM: poem, StageType.VOICE: voice}

    # A change it cannot read moves the revision and nothing else.
    skipped = store.advance(6, SnapshotSource.CHANGE)
    assert skipped is not None
    assert (skipped.snapshot.revision, skipped.snapshot.source, skipped.changes) == (
        6,
        SnapshotSource.CHANGE,
        (),
    )

    # A stage with nothing held stays unconfigured.
    fresh = SnapshotStore([StageType.POEM])
    assert fresh.replace(3, [], SnapshotSource.SNAPSHOT, keep=[StageType.POEM]).changes == ()
    assert fresh.current is not None
    assert fresh.current.configs == {}


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"heartbeat_seconds": 0}, "heartbeat_seconds"),
        ({"stale_after_heartbeats": 0}, "stale_after_heartbeats"),
        ({"stale_grace_seconds": 0}, "stale_grace_seconds"),
        ({"backoff_initial_seconds": 0}, "backoff"),
        ({"backoff_initial_seconds": 2, "backoff_max_seconds": 1}, "backoff"),
        ({"connect_timeout_seconds": -1}, "connect_timeout_seconds"),
    ],
)
def test_timing_options_refuse_what_cannot_work(options: dict[str, float], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        TimingOptions(**options)  # type: ignore[arg-type]


def test_timing_options_defaults() -> None:
    timing = TimingOptions()
    assert (timing.stale_grace_seconds, timing.stale_after_heartbeats) == (2.0, 3)
    assert (timing.connect_timeout_for(1), timing.connect_timeout_for(3)) == (30.0, 3.0)
    assert TimingOptions(connect_timeout_seconds=7).connect_timeout_for(3) == 7
    with pytest.raises(TypeError, match="TlsConfig"):
        ConfigClient("127.0.0.1:1", tls=True)  # type: ignore[arg-type]
