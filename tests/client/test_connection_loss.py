"""The client's state tells the truth when the connection goes (flagd's conformance
scenarios as the yardstick): a stream that is down with no server answering turns the
client STALE after the grace (2 s), not after three heartbeats; a short loss or a
planned reconnect within the grace causes no transition; every transition reaches the
``on_state`` listeners exactly once."""

from __future__ import annotations

import logging
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from stageconfig import ClientState, ConfigClient, StageType, StateChange
from tests.client.conftest import ThreadedServer, set_voice
from tests.client.test_client import wait_until
from tests.fakes.provider_server import FakeProviders
from tests.support.servers import ServerProcess, server_env

GRACE = 2.0
"""The default stale grace."""

CONNECTING_TO_READY = [(ClientState.CONNECTING, ClientState.READY)]


class Recorder:
    """A client with every state transition its listeners saw."""

    def __init__(self, target: str) -> None:
        self.client = ConfigClient(target)
        self.seen: list[StateChange] = []
        self.client.on_state(self.seen.append)

    @property
    def transitions(self) -> list[tuple[ClientState, ClientState]]:
        return [(s.previous, s.state) for s in self.seen]


@pytest.fixture
def recorders() -> Iterator[list[Recorder]]:
    made: list[Recorder] = []
    yield made
    for recorder in made:
        recorder.client.close()


def test_a_connection_lost_for_one_second_causes_no_transition(
    server: ThreadedServer, recorders: list[Recorder]
) -> None:
    server.voice("alena")
    recorder = Recorder(server.target)
    recorders.append(recorder)
    recorder.client.wait_ready(10)

    server.stop()  # the stream ends and nothing listens on the port
    lost_at = time.monotonic()
    time.sleep(max(0.0, 1.0 - (time.monotonic() - lost_at)))  # the scenario: 1 s away
    server.start()  # the same port and database
    revision = server.voice("zahar")
    wait_until(lambda: recorder.client.applied_revision == revision, 5, "the client is back")
    back_after = time.monotonic() - lost_at

    print(f"\nlost for 1 s: back after {back_after:.2f} s")
    assert back_after < GRACE, f"back only after {back_after:.2f} s"
    assert recorder.transitions == CONNECTING_TO_READY
    assert recorder.client.state is ClientState.READY


def test_a_connection_lost_for_three_seconds_turns_stale_then_ready(
    db_path: Path, fake_providers: FakeProviders, recorders: list[Recorder]
) -> None:
    env = server_env(db_path, fake_providers)
    process = ServerProcess(env).start()
    try:
        process_target = process.target
        set_voice(process_target, "alena")
        recorder = Recorder(process_target)
        recorders.append(recorder)
        recorder.client.wait_ready(10)

        process.kill()  # SIGKILL: no goodbye, the connection just breaks
        killed_at = time.monotonic()
        stale_after = wait_until(
            lambda: recorder.client.state is ClientState.STALE, GRACE + 3, "STALE"
        )
        assert recorder.client.get(StageType.VOICE).model == "alena"  # still served
        time.sleep(max(0.0, 3.0 - (time.monotonic() - killed_at)))  # the scenario: 3 s away

        process = ServerProcess({**env, "STAGECONFIG_ADDRESS": process_target}).start()
        restarted_at = time.monotonic()
        ready_after = wait_until(
            lambda: recorder.client.state is ClientState.READY, 10, "READY again"
        )
    finally:
        process.stop(signal.SIGTERM)

    print(
        f"\nSIGKILL → STALE after {stale_after:.2f} s; restarted server → READY after "
        f"{ready_after:.2f} s (outage {restarted_at - killed_at:.1f} s)"
    )
    # The grace, give or take the time the stream took to notice the break.
    assert GRACE - 0.1 < stale_after < GRACE + 1.5
    assert recorder.transitions == [
        (ClientState.CONNECTING, ClientState.READY),
        (ClientState.READY, ClientState.STALE),
        (ClientState.STALE, ClientState.READY),
    ]
    assert recorder.seen[1].error is not None  # STALE says why


def test_a_planned_reconnect_at_the_max_connection_age_causes_no_transition(
    db_path: Path,
    fake_providers: FakeProviders,
    recorders: list[Recorder],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="stageconfig.client")
    aged = ThreadedServer(
        db_path,
        fake_providers,
        STAGECONFIG_MAX_CONNECTION_AGE_SECONDS="1",
        STAGECONFIG_MAX_CONNECTION_AGE_GRACE_SECONDS="0.5",
    ).start()
    try:
        aged.voice("alena")
        recorder = Recorder(aged.target)
        recorders.append(recorder)
        recorder.client.wait_ready(10)

        def reconnects() -> int:
            return sum("interrupted" in r.getMessage() for r in caplog.records)

        wait_until(lambda: reconnects() >= 3, 15, "three reconnects at the connection age")
        revision = aged.voice("zahar")
        wait_until(lambda: recorder.client.applied_revision == revision, 5, "the change")
    finally:
        aged.close()
    assert recorder.transitions == CONNECTING_TO_READY
