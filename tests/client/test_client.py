"""ConfigClient against a real server: readiness, reads from memory, listeners, resume,
staleness, fatal errors and close()."""

from __future__ import annotations

import dataclasses
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from stageconfig import (
    ClientClosedError,
    ClientState,
    ConfigChangeEvent,
    ConfigClient,
    NotReadyError,
    ProviderKind,
    SnapshotSource,
    StageNotConfiguredError,
    StageType,
    StateChange,
    TimingOptions,
    UnauthenticatedError,
)
from stageconfig_contract.v1 import stage_config_pb2 as pb
from tests.client.conftest import ThreadedServer, set_voice
from tests.fakes.provider_server import FakeProviders
from tests.support.servers import ServerProcess, server_env

WORKER_TOKEN = "wrk-2b8d4f6a1c3e5079b2d4f6a8c0e1f3a5"


def wait_until(condition: Callable[[], bool], timeout: float, what: str) -> float:
    """Poll ``condition`` until true; returns the seconds it took. Fails at the deadline."""
    start = time.monotonic()
    while not condition():
        if time.monotonic() - start > timeout:
            pytest.fail(f"not within {timeout} s: {what}")
        time.sleep(0.01)
    return time.monotonic() - start


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture
def client_factory() -> Iterator[Callable[..., ConfigClient]]:
    """Builds clients that are closed at the end of the test."""
    made: list[ConfigClient] = []

    def make(target: str, **kwargs: object) -> ConfigClient:
        client = ConfigClient(target, **kwargs)  # type: ignore[arg-type]
        made.append(client)
        return client

    yield make
    for client in made:
        client.close()


def test_get_serves_the_frozen_config_from_memory(
    server: ThreadedServer, client_factory: Callable[..., ConfigClient]
) -> None:
    revision = server.voice("alena", api_key="AQVN-voice-key-0001")
    client = client_factory(server.target)
    client.wait_ready(10)

    config = client.get(StageType.VOICE)
    assert (config.provider_kind, config.model, config.revision) == (
        ProviderKind.SPEECHKIT,
        "alena",
        revision,
    )
    assert config.api_key == "AQVN-voice-key-0001"  # plaintext: auth off = worker role
    assert "AQVN-voice-key-0001" not in repr(config)
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.model = "zahar"  # type: ignore[misc]
    assert client.applied_revision == revision
    assert client.snapshot().configs == {StageType.VOICE: config}

    # No network on get(): the server is gone and the answer is the same object.
    server.stop()
    assert client.get("VOICE") is config


def test_unconfigured_unwatched_and_not_started(
    server: ThreadedServer, client_factory: Callable[..., ConfigClient]
) -> None:
    server.voice("alena")
    client = client_factory(server.target, stages=[StageType.POEM, StageType.VOICE])
    with pytest.raises(NotReadyError, match=r"call start\(\) first"):
        client.get(StageType.VOICE)
    client.wait_ready(10)

    with pytest.raises(StageNotConfiguredError, match="POEM has no config") as unconfigured:
        client.get(StageType.POEM)
    assert isinstance(unconfigured.value, KeyError)
    with pytest.raises(KeyError, match="does not watch stage SONG"):
        client.get(StageType.SONG)
    assert set(client.snapshot().configs) == {StageType.VOICE}
    assert [w.client_id for w in server.watchers().watchers] == [client.client_id]
    assert list(server.watchers().watchers[0].stage_types) == [
        pb.STAGE_TYPE_POEM,
        pb.STAGE_TYPE_VOICE,
    ]


def test_wait_ready_names_the_target_and_the_last_error(
    client_factory: Callable[..., ConfigClient],
) -> None:
    target = f"127.0.0.1:{free_port()}"  # nothing listens there
    client = client_factory(target, timing=TimingOptions(backoff_max_seconds=0.5))
    started = time.monotonic()
    with pytest.raises(NotReadyError) as not_ready:
        client.wait_ready(1.0)
    assert 0.9 < time.monotonic() - started < 3
    message = str(not_ready.value)
    assert target in message
    assert "UNAVAILABLE" in message
    assert client.state is ClientState.CONNECTING
    with pytest.raises(NotReadyError):
        client.get(StageType.POEM)


def test_listeners_receive_changed_stages_old_and_new(
    server: ThreadedServer, client_factory: Callable[..., ConfigClient]
) -> None:
    first = server.voice("alena")
    client = client_factory(server.target)
    states: list[StateChange] = []
    changes: list[ConfigChangeEvent] = []
    client.on_state(states.append)
    remove = client.on_change(changes.append)
    client.wait_ready(10)

    second = server.voice("zahar")
    wait_until(lambda: client.applied_revision == second, 5, "the change arrives")

    assert [(s.previous, s.state) for s in states] == [(ClientState.CONNECTING, ClientState.READY)]
    assert [(e.revision, e.source, e.stages) for e in changes] == [
        (first, SnapshotSource.SNAPSHOT, {StageType.VOICE}),
        (second, SnapshotSource.CHANGE, {StageType.VOICE}),
    ]
    (change,) = changes[1].changes
    assert change.old is not None
    assert change.new is not None
    assert (change.old.model, change.new.model) == ("alena", "zahar")
    assert changes[1].snapshot.get(StageType.VOICE) == change.new

    remove()
    third = server.voice("ermil")
    wait_until(lambda: client.applied_revision == third, 5, "the third change arrives")
    assert len(changes) == 2


def test_reconnects_and_resumes_with_exactly_the_missed_changes(
    server: ThreadedServer,
    fake_providers: FakeProviders,
    client_factory: Callable[..., ConfigClient],
) -> None:
    server.voice("alena")
    client = client_factory(server.target, timing=TimingOptions(backoff_max_seconds=0.5))
    events: list[ConfigChangeEvent] = []
    client.on_change(events.append)
    client.wait_ready(10)
    held = client.applied_revision

    # The client's server goes away; meanwhile another instance on the same database
    # (a port the client does not know) takes two changes.
    server.stop()
    other = ThreadedServer(server.db_path, fake_providers).start()
    try:
        missed = [other.voice("zahar"), other.voice("jane")]
    finally:
        other.close()
    events.clear()
    server.start()  # same port, same database: the client comes back and resumes

    wait_until(lambda: client.applied_revision == missed[-1], 10, "the client resumes")
    assert [(e.revision, e.source) for e in events] == [
        (missed[0], SnapshotSource.CHANGE),
        (missed[1], SnapshotSource.CHANGE),
    ]
    assert held < missed[0]
    active = server.stub.GetActiveConfig(pb.GetActiveConfigRequest(stage_type=pb.STAGE_TYPE_VOICE))
    assert client.get(StageType.VOICE).model == active.config.model == "jane"
    assert client.state is ClientState.READY


def test_stale_after_three_missed_heartbeats_and_ready_again(
    db_path: Path,
    fake_providers: FakeProviders,
    client_factory: Callable[..., ConfigClient],
) -> None:
    process = ServerProcess(
        server_env(db_path, fake_providers, STAGECONFIG_HEARTBEAT_SECONDS="0.3")
    ).start()
    try:
        set_voice(process.target, "alena")
        client = client_factory(process.target)
        client.wait_ready(10)
        wait_until(lambda: client.heartbeat_seconds < 1, 5, "the period is learned")
        assert client.heartbeat_seconds == pytest.approx(0.3, abs=0.15)

        assert process.proc is not None
        process.proc.send_signal(signal.SIGSTOP)  # the connection stays open, silent
        frozen_at = time.monotonic()
        wait_until(lambda: client.state is ClientState.STALE, 5, "STALE")
        silent = time.monotonic() - frozen_at
        assert 0.6 < silent < 2.5  # three missed 0.3 s heartbeats, give or take one
        assert client.get(StageType.VOICE).model == "alena"  # still served
        assert client.staleness_seconds > 0.8

        process.proc.send_signal(signal.SIGCONT)
        wait_until(lambda: client.state is ClientState.READY, 10, "READY again")
        assert client.staleness_seconds < 1
    finally:
        if process.proc is not None:
            process.proc.send_signal(signal.SIGCONT)
        process.stop()


def test_unauthenticated_is_fatal_without_retrying(
    db_path: Path,
    fake_providers: FakeProviders,
    client_factory: Callable[..., ConfigClient],
) -> None:
    threaded = ThreadedServer(
        db_path, fake_providers, STAGECONFIG_TOKENS=f"celery:worker:{WORKER_TOKEN}"
    ).start()
    try:
        client = client_factory(threaded.target, token="not-a-token-of-this-server")
        states: list[StateChange] = []
        client.on_state(states.append)
        started = time.monotonic()
        with pytest.raises(NotReadyError, match="refused this client") as refused:
            client.wait_ready(10)
        assert time.monotonic() - started < 3  # at once, not at the timeout
        assert isinstance(refused.value.__cause__, UnauthenticatedError)
        assert client.state is ClientState.FATAL
        assert isinstance(client.last_error, UnauthenticatedError)
        assert states[-1].state is ClientState.FATAL
        # No hot loop: the watch thread is gone and the state stays FATAL.
        wait_until(
            lambda: not any(t.name.startswith("stageconfig-watch[") for t in threading.enumerate()),
            2,
            "the watch thread ends",
        )
        assert client.state is ClientState.FATAL

        good = client_factory(threaded.target, token=WORKER_TOKEN)
        good.wait_ready(10)  # empty database: READY with nothing configured
        assert good.snapshot().configs == {}
    finally:
        threaded.close()


def _threads_started_since(before: set[threading.Thread]) -> list[str]:
    """Client threads alive now that were not before the test: this test's client's
    (threads another test's client left behind are that test's concern)."""
    return [
        t.name
        for t in threading.enumerate()
        if t.name.startswith("stageconfig-") and t not in before
    ]


def test_close_interrupts_every_wait(client_factory: Callable[..., ConfigClient]) -> None:
    before = set(threading.enumerate())
    client = client_factory(
        f"127.0.0.1:{free_port()}",
        timing=TimingOptions(backoff_initial_seconds=20, backoff_max_seconds=30),
    )
    outcome: list[BaseException] = []

    def waiter() -> None:
        try:
            client.wait_ready(60)
        except BaseException as exc:
            outcome.append(exc)

    thread = threading.Thread(target=waiter)
    thread.start()
    wait_until(lambda: client.last_error is not None, 5, "a first failed attempt")
    started = time.monotonic()
    client.close()  # the watch thread sits in a backoff wait of up to 20 s
    thread.join(5)
    assert time.monotonic() - started < 2
    assert len(outcome) == 1
    assert isinstance(outcome[0], ClientClosedError)
    assert client.state is ClientState.CLOSED
    assert _threads_started_since(before) == []
    with pytest.raises(ClientClosedError):
        client.get(StageType.POEM)
    client.close()  # idempotent


def test_a_listener_may_close_the_client(
    server: ThreadedServer, client_factory: Callable[..., ConfigClient]
) -> None:
    server.voice("alena")
    before = set(threading.enumerate())
    client = client_factory(server.target)
    closed = threading.Event()

    def close_on_change(event: ConfigChangeEvent) -> None:
        client.close()  # from the client's own watch thread
        closed.set()

    client.on_change(close_on_change)
    client.start()
    assert closed.wait(5)
    wait_until(lambda: _threads_started_since(before) == [], 3, "the client's threads end")
    assert client.state is ClientState.CLOSED
