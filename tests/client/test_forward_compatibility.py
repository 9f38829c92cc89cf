"""An older client on a newer server (a rolling upgrade, servers first): enum values and
message kinds the client does not know never break the stream, the state or the other
stages. A stage whose config it cannot represent keeps its last config (or stays
unconfigured), one WARNING says which stage, value and revision, and later revisions
apply as usual."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest
from celery import Celery

from stageconfig import (
    ChangeReason,
    ClientState,
    ConfigClient,
    ConfigSource,
    ConfigStatus,
    ProviderKind,
    StageNotConfiguredError,
    StageType,
    StateChange,
    StatusCause,
)
from stageconfig.contrib import celery as contrib
from stageconfig_contract.v1 import stage_config_pb2 as pb
from tests.client.newer_server import (
    UNKNOWN,
    NewerServer,
    change,
    config,
    serve,
    snapshot,
    unknown_event,
)
from tests.client.test_client import wait_until

POEM_GEMINI = config(pb.STAGE_TYPE_POEM, pb.PROVIDER_KIND_GEMINI, 3, "gemini-2.5-flash")
VOICE_ALENA = config(pb.STAGE_TYPE_VOICE, pb.PROVIDER_KIND_SPEECHKIT, 4, "alena")
SONG_UNKNOWN = config(pb.STAGE_TYPE_SONG, UNKNOWN, 2, "a-newer-provider-model")
POEM_UNKNOWN = config(pb.STAGE_TYPE_POEM, UNKNOWN, 5, "a-newer-provider-model")
VOICE_UNKNOWN_ENUMS = config(
    pb.STAGE_TYPE_VOICE,
    pb.PROVIDER_KIND_SPEECHKIT,
    7,
    "zahar",
    status=UNKNOWN,
    cause=UNKNOWN,
    source=UNKNOWN,
)


@pytest.fixture
def newer() -> Iterator[tuple[NewerServer, str]]:
    """A newer server whose first snapshot has a SONG config of an unknown provider."""
    servicer = NewerServer(snapshot(4, POEM_GEMINI, VOICE_ALENA, SONG_UNKNOWN))
    server, target = serve(servicer)
    try:
        yield servicer, target
    finally:
        server.stop(0)


@pytest.fixture
def client(newer: tuple[NewerServer, str]) -> Iterator[ConfigClient]:
    made = ConfigClient(newer[1])
    yield made
    made.close()


def unknown_value_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.levelno == logging.WARNING and "a value this client does not know" in r.getMessage()
    ]


def test_unknown_values_keep_the_stream_the_state_and_the_other_stages(
    newer: tuple[NewerServer, str], client: ConfigClient, caplog: pytest.LogCaptureFixture
) -> None:
    servicer, _ = newer
    caplog.set_level(logging.WARNING, logger="stageconfig.client")
    states: list[StateChange] = []
    client.on_state(states.append)
    client.wait_ready(10)

    # The snapshot: POEM and VOICE are served; SONG's provider is unknown, so SONG stays
    # unconfigured in this client — refused (NACKed), which holds applied_revision below
    # the refused revision 2 while the stream is at 4.
    assert client.snapshot().revision == 4
    assert client.applied_revision == 1
    assert client.get(StageType.POEM).provider_kind is ProviderKind.GEMINI
    assert client.get(StageType.VOICE).model == "alena"
    with pytest.raises(StageNotConfiguredError):
        client.get(StageType.SONG)

    # A change to a provider this client does not know: POEM keeps its last config,
    # the revision still advances (a resume does not replay it forever).
    servicer.send(change(5, POEM_UNKNOWN))
    wait_until(lambda: client.snapshot().revision == 5, 5, "revision 5 reached")
    assert client.get(StageType.POEM) == client.snapshot().configs[StageType.POEM]
    assert client.get(StageType.POEM).model == "gemini-2.5-flash"

    # A stage this client does not know, then a kind of message it does not know.
    servicer.send(change(6, config(UNKNOWN, pb.PROVIDER_KIND_OPENAI, 6, "gpt-5")))
    servicer.send(unknown_event())
    wait_until(lambda: client.snapshot().revision == 6, 5, "revision 6 reached")

    # Unknown status, cause, source and reason: read as UNSPECIFIED, the change applies.
    servicer.send(change(7, VOICE_UNKNOWN_ENUMS, reason=UNKNOWN))
    wait_until(lambda: client.snapshot().revision == 7, 5, "revision 7 reached")
    voice = client.get(StageType.VOICE)
    assert (voice.model, voice.revision) == ("zahar", 7)
    assert voice.status is ConfigStatus.UNSPECIFIED
    assert voice.status_cause is StatusCause.UNSPECIFIED
    assert voice.source is ConfigSource.UNSPECIFIED
    assert ChangeReason.from_number(UNKNOWN) is None  # the reason was one it did not know

    # Heartbeats, then a reconnect whose fresh snapshot carries the same unreadable
    # configs: no warning again, POEM still keeps its last config.
    seen = servicer.heartbeats
    wait_until(lambda: servicer.heartbeats >= seen + 2, 5, "two heartbeats")
    servicer.snapshot = snapshot(7, POEM_UNKNOWN, VOICE_UNKNOWN_ENUMS, SONG_UNKNOWN)
    servicer.end_stream()
    wait_until(lambda: len(servicer.requests) == 2, 10, "the client reconnects")
    assert servicer.requests[1].resume_revision == 7

    # A good change for the same stage applies as usual.
    servicer.send(change(8, config(pb.STAGE_TYPE_POEM, pb.PROVIDER_KIND_OPENAI, 8, "gpt-4o")))
    wait_until(lambda: client.snapshot().revision == 8, 5, "revision 8 reached")
    poem = client.get(StageType.POEM)
    assert (poem.provider_kind, poem.model, poem.revision) == (ProviderKind.OPENAI, "gpt-4o", 8)
    assert client.get(StageType.VOICE).model == "zahar"
    # SONG's config at revision 2 is still one this client cannot use: still refused.
    assert client.applied_revision == 1

    assert client.state is ClientState.READY
    assert [(s.previous, s.state) for s in states] == [(ClientState.CONNECTING, ClientState.READY)]
    warnings = unknown_value_warnings(caplog)
    assert len(warnings) == 3, warnings
    expected = [
        ("SONG", "provider_kind=99", "revision 2", "SONG stays unconfigured"),
        ("POEM", "provider_kind=99", "revision 5", "keeping the last POEM config"),
        ("a config", "stage_type=99", "revision 6", "ignoring that stage"),
    ]
    for warning, words in zip(warnings, expected, strict=True):
        for word in words:
            assert word in warning, (word, warning)


def test_current_config_in_celery_serves_the_last_readable_config(
    newer: tuple[NewerServer, str],
) -> None:
    servicer, target = newer
    app = Celery("forward-compatibility")
    contrib.setup_stageconfig(app, target=target, stages=[StageType.POEM, StageType.SONG])
    try:
        assert contrib.current_config(StageType.POEM).model == "gemini-2.5-flash"
        servicer.send(change(5, POEM_UNKNOWN))
        client = contrib.current_client()
        wait_until(lambda: client.snapshot().revision == 5, 5, "revision 5 reached")
        assert contrib.current_config(StageType.POEM).model == "gemini-2.5-flash"
        with pytest.raises(StageNotConfiguredError):
            contrib.current_config(StageType.SONG)
        assert client.state is ClientState.READY
    finally:
        contrib.close_client()
        app.close()
