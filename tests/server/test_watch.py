"""WatchConfig's guarantees, against the real in-process server: snapshot at one
revision, a change per commit, heartbeats, exact resumes, snapshots when a resume
cannot be served, monotonic revisions, the database's state, encode-once fan-out,
coalescing and dropping of slow watchers, ListWatchers and connection ageing."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import grpc
import pytest

from stageconfig_contract.v1 import stage_config_pb2 as pb
from stageconfig_contract.v1 import stage_config_pb2_grpc as pbg
from stageconfig_server.app import StageConfigApp
from tests.fakes.provider_server import FakeProviders
from tests.support.servers import start_app

Stub = pbg.StageConfigServiceStub
VOICE, SONG, POEM = pb.STAGE_TYPE_VOICE, pb.STAGE_TYPE_SONG, pb.STAGE_TYPE_POEM


async def _set(stub: Stub, stage: int, provider: int, key: str, model: str) -> int:
    """Store ``stage``'s config; returns the new revision."""
    response = await stub.UpdateConfig(
        pb.UpdateConfigRequest(stage_type=stage, provider_kind=provider, api_key=key, model=model)
    )
    return response.config.revision


async def set_voice(stub: Stub, model: str, key: str = "AQVN-voice-key-0001") -> int:
    """VOICE on SpeechKit (no network, any key); returns the new revision."""
    return await _set(stub, VOICE, pb.PROVIDER_KIND_SPEECHKIT, key, model)


async def set_song(stub: Stub, model: str) -> int:
    return await _set(stub, SONG, pb.PROVIDER_KIND_SUNO, "suno-key-0001", model)


async def set_poem(stub: Stub, model: str) -> int:
    return await _set(stub, POEM, pb.PROVIDER_KIND_OPENAI, "sk-poem-0001", model)


def watch(
    stub: Stub,
    stages: Sequence[pb.StageType.ValueType] = (),
    resume: int | None = None,
    client_id: str = "test",
) -> grpc.aio.UnaryStreamCall[pb.WatchConfigRequest, pb.WatchConfigResponse]:
    request = pb.WatchConfigRequest(stage_types=list(stages), client_id=client_id)
    if resume is not None:
        request.resume_revision = resume
    return stub.WatchConfig(request)


async def next_message(
    call: grpc.aio.UnaryStreamCall[pb.WatchConfigRequest, pb.WatchConfigResponse],
    seconds: float = 5.0,
) -> pb.WatchConfigResponse:
    message = await asyncio.wait_for(call.read(), seconds)
    assert message is not grpc.aio.EOF, "the stream ended"
    assert isinstance(message, pb.WatchConfigResponse)
    return message


async def changes_until_heartbeat(
    call: grpc.aio.UnaryStreamCall[pb.WatchConfigRequest, pb.WatchConfigResponse],
) -> tuple[list[pb.Change], pb.Heartbeat]:
    changes: list[pb.Change] = []
    while True:
        message = await next_message(call)
        kind = message.WhichOneof("event")
        if kind == "heartbeat":
            return changes, message.heartbeat
        assert kind == "change", message
        changes.append(message.change)


async def drain(
    call: grpc.aio.UnaryStreamCall[pb.WatchConfigRequest, pb.WatchConfigResponse],
) -> None:
    """Read what the stream still holds, to its status (raised if not OK)."""
    while (await call.read()) is not grpc.aio.EOF:
        pass


@pytest.fixture
async def custom_app(
    db_path: Path, fake_providers: FakeProviders
) -> AsyncIterator[list[StageConfigApp]]:
    """Apps started by the test with their own settings; stopped afterwards."""
    apps: list[StageConfigApp] = []
    yield apps
    for started in apps:
        await started.stop(grace=0.5)


async def test_snapshot_has_the_requested_stages_at_one_revision(stub: Stub) -> None:
    await set_voice(stub, "alena")
    await set_song(stub, "V5")
    head = await set_poem(stub, "gpt-4o")

    some = watch(stub, [VOICE, SONG])
    first = await next_message(some)
    assert first.WhichOneof("event") == "snapshot"
    assert first.snapshot.revision == head
    assert sorted((c.stage_type, c.model) for c in first.snapshot.configs) == [
        (VOICE, "alena"),
        (SONG, "V5"),
    ]
    assert all(c.api_key and not c.api_key_masked for c in first.snapshot.configs)

    every = watch(stub)  # no stages = all of them
    snapshot = (await next_message(every)).snapshot
    assert snapshot.revision == head
    assert {c.stage_type for c in snapshot.configs} == {POEM, VOICE, SONG}  # CLIP: none
    some.cancel()
    every.cancel()


async def test_a_change_per_committed_update_then_heartbeats_every_period(stub: Stub) -> None:
    call = watch(stub)
    start = (await next_message(call)).snapshot.revision
    revisions = [await set_voice(stub, m) for m in ("alena", "zahar", "jane")]
    assert revisions == [start + 1, start + 2, start + 3]

    changes, heartbeat = await changes_until_heartbeat(call)
    assert [(c.revision, c.config.model, c.reason) for c in changes] == [
        (revisions[0], "alena", pb.CHANGE_REASON_ADMIN_UPDATE),
        (revisions[1], "zahar", pb.CHANGE_REASON_ADMIN_UPDATE),
        (revisions[2], "jane", pb.CHANGE_REASON_ADMIN_UPDATE),
    ]
    assert heartbeat.head_revision == revisions[-1]
    assert heartbeat.HasField("server_time")

    # The test server's STAGECONFIG_HEARTBEAT_SECONDS is 1.
    received = []
    for _ in range(2):
        message = await next_message(call, seconds=3)
        assert message.WhichOneof("event") == "heartbeat"
        received.append(time.monotonic())
    assert 0.7 < received[1] - received[0] < 1.5
    call.cancel()


async def test_resume_inside_the_window_sends_exactly_the_missed_changes(stub: Stub) -> None:
    base = await set_voice(stub, "alena")
    missed = [
        await set_song(stub, "V4"),
        await set_voice(stub, "zahar"),
        await set_song(stub, "V5"),
    ]

    resumed = watch(stub, resume=base)
    changes, heartbeat = await changes_until_heartbeat(resumed)
    assert [(c.revision, c.config.stage_type) for c in changes] == [
        (missed[0], SONG),
        (missed[1], VOICE),
        (missed[2], SONG),
    ]
    assert heartbeat.head_revision == missed[-1]

    voice_only = watch(stub, [VOICE], resume=base)
    changes, heartbeat = await changes_until_heartbeat(voice_only)
    assert [c.revision for c in changes] == [missed[1]]
    assert heartbeat.head_revision == missed[-1]

    at_head = watch(stub, resume=missed[-1])
    changes, heartbeat = await changes_until_heartbeat(at_head)
    assert changes == []
    for call in (resumed, voice_only, at_head):
        call.cancel()


async def test_a_resume_outside_the_window_or_beyond_the_head_gets_a_snapshot(
    db_path: Path, fake_providers: FakeProviders, custom_app: list[StageConfigApp]
) -> None:
    started = await start_app(db_path, fake_providers, STAGECONFIG_WATCH_RETAINED_CHANGES="2")
    custom_app.append(started)
    async with grpc.aio.insecure_channel(started.target) as channel:
        stub = Stub(channel)
        first = await set_voice(stub, "alena")
        for model in ("zahar", "jane", "ermil"):
            head = await set_voice(stub, model)

        too_old = watch(stub, resume=first)  # revisions first+1.. left the 2-change window
        message = await next_message(too_old)
        assert message.WhichOneof("event") == "snapshot"
        assert message.snapshot.revision == head
        assert [c.model for c in message.snapshot.configs] == ["ermil"]

        beyond = watch(stub, resume=head + 100)  # e.g. a database restored from a backup
        message = await next_message(beyond)
        assert message.WhichOneof("event") == "snapshot"
        assert message.snapshot.revision == head

        inside = watch(stub, resume=head - 1)
        changes, _ = await changes_until_heartbeat(inside)
        assert [c.revision for c in changes] == [head]
        for call in (too_old, beyond, inside):
            call.cancel()


async def test_revisions_only_increase_and_the_last_state_equals_the_database(
    stub: Stub,
) -> None:
    call = watch(stub)
    snapshot = (await next_message(call)).snapshot
    held = {c.stage_type: c for c in snapshot.configs}
    seen = [snapshot.revision]

    async def writer() -> list[int]:
        written = []
        for i in range(12):
            if i % 2:
                written.append(await set_voice(stub, ("alena", "zahar", "jane")[i % 3]))
            else:
                written.append(await set_song(stub, ("V4", "V5")[i % 4 // 2]))
        return written

    async def reader(until: int) -> None:
        while seen[-1] < until or not until:
            message = await next_message(call)
            if message.WhichOneof("event") == "change":
                seen.append(message.change.revision)
                held[message.change.config.stage_type] = message.change.config
            elif message.WhichOneof("event") == "heartbeat" and until:
                assert message.heartbeat.head_revision >= until
                return

    written = await writer()
    await reader(written[-1])

    assert seen == sorted(set(seen))  # strictly increasing
    history = await stub.GetConfigHistory(pb.GetConfigHistoryRequest(page_size=100))
    stage_of = {e.revision: e.stage_type for e in history.entries}
    for revision in written:  # none skipped silently: seen, or superseded for its stage
        assert revision in seen or any(
            later in seen and stage_of[later] == stage_of[revision]
            for later in written
            if later > revision
        )
    configs = await stub.ListConfigs(pb.ListConfigsRequest())
    for view in configs.stages:
        if view.config.source != pb.CONFIG_SOURCE_DATABASE:
            assert view.stage_type not in held
            continue
        active = await stub.GetActiveConfig(pb.GetActiveConfigRequest(stage_type=view.stage_type))
        assert held[view.stage_type] == active.config  # key, model, revision, everything
    assert configs.head_revision == seen[-1]
    call.cancel()


async def test_each_change_is_encoded_once_for_every_watcher(
    app: StageConfigApp, stub: Stub
) -> None:
    calls = [watch(stub, client_id=f"w{i}") for i in range(5)]
    for call in calls:
        await next_message(call)
    before = app.broadcaster.changes_encoded
    revisions = [await set_voice(stub, m) for m in ("alena", "zahar", "jane")]

    payloads = []
    for call in calls:
        changes, _ = await changes_until_heartbeat(call)
        assert [c.revision for c in changes] == revisions
        payloads.append([c.SerializeToString() for c in changes])
    assert app.broadcaster.changes_encoded - before == len(revisions)  # not 3 × 5
    assert all(p == payloads[0] for p in payloads)
    for call in calls:
        call.cancel()


async def test_a_slow_watcher_coalesces_then_is_dropped(
    db_path: Path, fake_providers: FakeProviders, custom_app: list[StageConfigApp]
) -> None:
    started = await start_app(db_path, fake_providers, STAGECONFIG_WATCH_SEND_TIMEOUT_SECONDS="0.5")
    custom_app.append(started)
    # No BDP probing: the client keeps its 64 KB window, which a reader that never
    # reads fills with ~16 changes carrying 4 KB keys.
    options = [("grpc.http2.bdp_probe", 0)]
    async with (
        grpc.aio.insecure_channel(started.target, options=options) as slow_channel,
        grpc.aio.insecure_channel(started.target) as channel,
    ):
        stub = Stub(channel)
        slow = watch(Stub(slow_channel), client_id="slow")
        await next_message(slow)
        healthy = watch(stub, client_id="healthy")
        await next_message(healthy)
        broadcaster = started.broadcaster
        slow_watcher = next(w for w in broadcaster.watchers if w.client_id == "slow")
        largest_queue = 0
        updates = 0
        while slow_watcher in broadcaster.watchers and updates < 400:
            updates += 1
            await set_voice(stub, "alena" if updates % 2 else "zahar", key=f"{updates:04d}" * 1000)
            largest_queue = max(largest_queue, len(slow_watcher.pending))
        assert slow_watcher not in broadcaster.watchers, "the slow watcher was never dropped"
        assert broadcaster.watchers_dropped == 1
        assert largest_queue == 1  # one stage changed: at most one pending change for it
        assert slow_watcher.last_revision < updates  # it really stopped reading

        listed = await stub.ListWatchers(pb.ListWatchersRequest())
        assert [w.client_id for w in listed.watchers] == ["healthy"]
        with pytest.raises(grpc.aio.AioRpcError) as dropped:
            await drain(slow)
        assert dropped.value.code() == grpc.StatusCode.UNAVAILABLE
        assert "too slow" in (dropped.value.details() or "")
        healthy.cancel()


async def test_list_watchers_shows_who_holds_which_revision(stub: Stub) -> None:
    head = await set_voice(stub, "alena")
    voice = watch(stub, [VOICE], client_id="worker-1/42")
    await next_message(voice)
    everything = watch(stub, client_id="worker-2/43")
    await next_message(everything)

    listed = await stub.ListWatchers(pb.ListWatchersRequest())
    assert listed.head_revision == head
    by_id = {w.client_id: w for w in listed.watchers}
    assert set(by_id) == {"worker-1/42", "worker-2/43"}
    assert list(by_id["worker-1/42"].stage_types) == [VOICE]
    assert sorted(by_id["worker-2/43"].stage_types) == [POEM, VOICE, SONG, pb.STAGE_TYPE_CLIP]
    assert by_id["worker-1/42"].peer.startswith("ipv4:127.0.0.1:")
    assert by_id["worker-1/42"].HasField("connected_since")
    assert all(w.last_revision == head for w in listed.watchers)

    # A SONG change: the all-stages watcher gets it; the VOICE watcher learns from the
    # next heartbeat that it is current up to the new head too.
    song = await set_song(stub, "V5")
    changes, _ = await changes_until_heartbeat(everything)
    assert [c.revision for c in changes] == [song]
    _, heartbeat = await changes_until_heartbeat(voice)
    assert heartbeat.head_revision == song
    deadline = time.monotonic() + 3
    while True:
        listed = await stub.ListWatchers(pb.ListWatchersRequest())
        delivered = {w.client_id: w.last_revision for w in listed.watchers}
        if delivered == {"worker-1/42": song, "worker-2/43": song}:
            break
        assert time.monotonic() < deadline, delivered
        await asyncio.sleep(0.02)
    voice.cancel()
    everything.cancel()


async def test_long_streams_are_closed_by_the_connection_age_and_can_resume(
    db_path: Path, fake_providers: FakeProviders, custom_app: list[StageConfigApp]
) -> None:
    started = await start_app(
        db_path,
        fake_providers,
        STAGECONFIG_MAX_CONNECTION_AGE_SECONDS="1",
        STAGECONFIG_MAX_CONNECTION_AGE_GRACE_SECONDS="0.5",
    )
    custom_app.append(started)
    async with grpc.aio.insecure_channel(started.target) as channel:
        stub = Stub(channel)
        head = await set_voice(stub, "alena")
        call = watch(stub)
        opened = time.monotonic()
        held = (await next_message(call)).snapshot.revision
        ended: grpc.StatusCode | None = None
        while ended is None:
            try:
                message = await asyncio.wait_for(call.read(), 5)
            except grpc.aio.AioRpcError as exc:
                ended = exc.code()
                break
            if message is grpc.aio.EOF:
                ended = await call.code()
            elif message.WhichOneof("event") == "heartbeat":
                held = message.heartbeat.head_revision
        assert ended == grpc.StatusCode.UNAVAILABLE  # a client reconnects on this
        assert time.monotonic() - opened < 4  # age 1 s (±10 %) + 0.5 s grace
        # The client comes back on a new connection and resumes where it was.
        newer = await set_voice(stub, "zahar")
        resumed = watch(stub, resume=held)
        changes, heartbeat = await changes_until_heartbeat(resumed)
        assert held == head
        assert [c.revision for c in changes] == [newer]
        assert heartbeat.head_revision == newer
        resumed.cancel()
