"""The shared-memory segment: a reader never sees a torn snapshot while a writer in
another process publishes as fast as it can; files are the user's only (0600, and a
segment another user made or others may write is refused); the generation survives a
writer's restart; a payload format from the future is refused, not misread."""

from __future__ import annotations

import multiprocessing
import os
import stat
import time
from dataclasses import replace
from multiprocessing.synchronize import Event
from pathlib import Path

import pytest

from stageconfig._segment import SegmentError, SegmentReader, SegmentWriter, segment_paths
from stageconfig._snapshot_codec import UnsupportedPayload, decode, encode
from stageconfig._store import ConfigSnapshot, SnapshotSource
from stageconfig._types import (
    ConfigSource,
    ConfigStatus,
    ProviderKind,
    Route,
    StageConfig,
    StageType,
    StatusCause,
)
from tests.agent.support import shm_dir


def payload_of(generation: int) -> bytes:
    """A payload whose every byte depends on its generation, of a varying length (so a
    mix of two publishes, or a short copy, is recognisable)."""
    length = 1_000 + (generation * 7919) % 60_000
    unit = generation.to_bytes(8, "little")
    return (unit * (length // 8 + 1))[:length]


def _write_fast(path: str, stop: Event, started: Event) -> None:
    writer = SegmentWriter(Path(path))
    started.set()
    while not stop.is_set():
        writer.publish(payload_of(writer.generation + 1))
    writer.close()


def test_a_reader_never_sees_a_torn_snapshot_under_a_writer_in_another_process() -> None:
    with shm_dir() as directory:
        path = directory / "segment"
        SegmentWriter(path).close()  # the file exists before the reader maps it
        ctx = multiprocessing.get_context("spawn")
        stop, started = ctx.Event(), ctx.Event()
        writer = ctx.Process(target=_write_fast, args=(str(path), stop, started))
        writer.start()
        try:
            assert started.wait(30)
            reader = SegmentReader(path)
            seen: set[int] = set()
            deadline = time.monotonic() + 3.0
            while time.monotonic() < deadline or len(seen) < 200:
                read = reader.read()
                if read is None:
                    continue
                generation, payload = read
                assert payload == payload_of(generation), f"torn read at {generation}"
                seen.add(generation)
                assert time.monotonic() < deadline + 20, f"the writer barely moved: {len(seen)}"
            reader.close()
        finally:
            stop.set()
            writer.join(10)
        # The reads really raced the writer: it published between most of them.
        assert len(seen) >= 200


def test_files_are_the_users_only_and_foreign_segments_are_refused() -> None:
    with shm_dir() as directory:
        path = directory / "segment"
        umask = os.umask(0)  # whatever the umask, the segment is 0600
        try:
            writer = SegmentWriter(path)
        finally:
            os.umask(umask)
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        writer.close()
        path.chmod(0o666)
        with pytest.raises(SegmentError, match="writable by others"):
            SegmentReader(path)
        path.chmod(0o600)
        os.chown(path, 4242, -1)  # a squatter's file (the tests run as root)
        with pytest.raises(SegmentError, match="belongs to uid 4242"):
            SegmentReader(path)
        with pytest.raises(SegmentError, match="belongs to uid 4242"):
            SegmentWriter(path)
        link = directory / "link"
        link.symlink_to(directory / "elsewhere")
        # O_NOFOLLOW: a planted link is not followed.
        with pytest.raises(OSError, match="symbolic link"):
            SegmentWriter(link)


def test_names_come_from_the_user_and_the_targets() -> None:
    a = segment_paths("10.0.0.1:50051,10.0.0.2:50051", Path("/dev/shm"))
    assert a == segment_paths(["10.0.0.1:50051", " 10.0.0.2:50051"], Path("/dev/shm"))
    assert a != segment_paths("10.0.0.1:50051", Path("/dev/shm"))
    assert a.segment.name.startswith(f"stageconfig-{os.geteuid()}-")
    assert a.lock.name == a.segment.name + ".lock"
    assert a.socket.name == a.segment.name + ".sock"


def test_a_restarted_writer_continues_the_generations() -> None:
    with shm_dir() as directory:
        path = directory / "segment"
        first = SegmentWriter(path)
        first.publish(b"one")
        first.publish(b"two")
        reader = SegmentReader(path)
        first.close()
        second = SegmentWriter(path)
        assert second.generation == 2
        second.publish(b"three")
        assert reader.read() == (3, b"three")  # the old mapping sees the new writer
        second.close()
        reader.close()


def _config(revision: int, model: str) -> StageConfig:
    return StageConfig(
        stage_type=StageType.VOICE,
        provider_kind=ProviderKind.SPEECHKIT,
        api_key="AQVN-codec-secret-0001",
        model=model,
        revision=revision,
        status=ConfigStatus.ACTIVE,
        source=ConfigSource.DATABASE,
        options={"voice": model},
    )


def test_the_codec_round_trips_and_refuses_a_format_from_the_future() -> None:
    snapshot = ConfigSnapshot(
        revision=7,
        configs={StageType.VOICE: _config(7, "alena")},
        stages=frozenset(StageType),
        source=SnapshotSource.CHANGE,
    )
    back = decode(encode(snapshot))
    assert back.revision == 7
    assert back.source is SnapshotSource.CHANGE
    assert back.configs[StageType.VOICE] == snapshot.configs[StageType.VOICE]
    assert back.stages == frozenset(StageType)
    with pytest.raises(UnsupportedPayload, match="format 2"):
        decode(b"\x02{}")
    # Within version 1: unknown keys are ignored, an unknown provider is left out.
    future = (
        b'\x01{"revision":8,"source":"CHANGE","stages":["VOICE","POEM"],"new":1,"configs":['
        b'{"stage_type":"POEM","provider_kind":"NEW_AI","api_key":"k","model":"m","revision":8}]}'
    )
    assert decode(future).configs == {}


def test_the_codec_carries_fallback_routes_and_leaves_out_unknown_providers() -> None:
    pool = Route(
        provider_kind=ProviderKind.SPEECHKIT,
        api_key="AQVN-codec-pool-key-0002",
        model="alena",
        options={"voice": "alena"},
        status=ConfigStatus.ERROR,
        status_reason="credits exhausted",
        status_cause=StatusCause.QUOTA,
        api_key_fingerprint="ab12cd34",
        index=2,
    )
    config = replace(_config(9, "alena"), fallbacks=(pool,))
    snapshot = ConfigSnapshot(
        revision=9,
        configs={StageType.VOICE: config},
        stages=frozenset({StageType.VOICE}),
        source=SnapshotSource.CHANGE,
    )
    (route,) = decode(encode(snapshot)).configs[StageType.VOICE].fallbacks
    assert route == pool  # the plaintext key too: a worker calls the provider with it
    future = (
        b'\x01{"revision":9,"stages":["VOICE"],"configs":[{"stage_type":"VOICE",'
        b'"provider_kind":"SPEECHKIT","api_key":"k","model":"m","revision":9,"fallbacks":['
        b'{"index":1,"provider_kind":"NEW_AI","api_key":"k1","model":"m1"},'
        b'{"index":2,"provider_kind":"SPEECHKIT","api_key":"k2","model":"m2"}]}]}'
    )
    (kept,) = decode(future).configs[StageType.VOICE].fallbacks
    assert (kept.index, kept.model) == (2, "m2")  # keeps the server's numbering
