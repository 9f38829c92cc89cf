"""``stageconfigctl`` prints nothing that can drive a terminal (issue 19, item 5).

A real grpc server on port 0 answers every admin RPC with strings full of ESC, BEL, C1,
DEL, bidi overrides and line separators — as a hostile provider (model names, reasons),
worker (client ids) or admin (comments) could get them into a real server's answers.
The real ``stageconfigctl`` console script runs against it: its output holds no such
character raw (only their ``\\xNN`` / ``\\uNNNN`` spelling), and ``--json`` output parses
back to the very strings the server sent.
"""

from __future__ import annotations

import json
import unicodedata
from collections.abc import Iterator
from concurrent import futures
from typing import Any

import grpc
import pytest

from stageconfig_contract.v1 import stage_config_pb2 as pb
from stageconfig_contract.v1 import stage_config_pb2_grpc as pbg
from tests.admin.conftest import run_ctl

EVIL = "\x1b]0;owned\x07\x1b[2J\x9b31m\x7f\u202eexe.txt\u2028"
"""Retitle the terminal, ring, clear the screen, C1 CSI, DEL, a bidi override, a line
separator."""


def evil(label: str) -> str:
    """A recognisable hostile string."""
    return f"{label}{EVIL}end"


def _config(stage: int, provider: int) -> pb.StageConfig:
    return pb.StageConfig(
        stage_type=stage,
        provider_kind=provider,
        model=evil("model"),
        revision=3,
        status=pb.CONFIG_STATUS_ERROR,
        source=pb.CONFIG_SOURCE_DATABASE,
        status_reason=evil("reason"),
        api_key="AQVN…0000",
        api_key_masked=True,
        options={"voice": evil("option")},
    )


VOICE = _config(pb.STAGE_TYPE_VOICE, pb.PROVIDER_KIND_SPEECHKIT)


class HostileServicer(pbg.StageConfigServiceServicer):
    """Admin RPCs whose every free-text field carries control sequences."""

    def ListConfigs(self, request: pb.ListConfigsRequest, context: Any) -> pb.ListConfigsResponse:
        view = pb.StageConfigView(
            stage_type=pb.STAGE_TYPE_VOICE,
            config=VOICE,
            models=[evil("listed")],
            allowed_providers=[pb.PROVIDER_KIND_SPEECHKIT],
        )
        return pb.ListConfigsResponse(stages=[view], head_revision=3)

    def ListModels(self, request: pb.ListModelsRequest, context: Any) -> pb.ListModelsResponse:
        return pb.ListModelsResponse(
            models=[evil("listed")],
            selected_model=evil("model"),
            provider_kind=pb.PROVIDER_KIND_SPEECHKIT,
            status=pb.CONFIG_STATUS_ERROR,
            status_reason=evil("reason"),
        )

    def GetConfigHistory(
        self, request: pb.GetConfigHistoryRequest, context: Any
    ) -> pb.GetConfigHistoryResponse:
        entry = pb.HistoryEntry(
            revision=3,
            stage_type=pb.STAGE_TYPE_VOICE,
            actor=evil("actor"),
            reason=pb.CHANGE_REASON_ADMIN_UPDATE,
            comment=evil("comment"),
        )
        entry.changes.add(field="model", old_value=evil("old"), new_value=evil("new"))
        entry.time.GetCurrentTime()
        return pb.GetConfigHistoryResponse(entries=[entry])

    def ListWatchers(
        self, request: pb.ListWatchersRequest, context: Any
    ) -> pb.ListWatchersResponse:
        watcher = pb.WatcherInfo(
            client_id=evil("client"),
            peer=evil("peer"),
            actor=evil("actor"),
            stage_types=[pb.STAGE_TYPE_VOICE],
            last_revision=3,
        )
        watcher.connected_since.GetCurrentTime()
        return pb.ListWatchersResponse(watchers=[watcher], head_revision=3)

    def UpdateConfig(
        self, request: pb.UpdateConfigRequest, context: Any
    ) -> pb.UpdateConfigResponse:
        context.abort(grpc.StatusCode.FAILED_PRECONDITION, evil("refusal"))
        raise AssertionError("unreachable")

    def WatchConfig(
        self, request: pb.WatchConfigRequest, context: Any
    ) -> Iterator[pb.WatchConfigResponse]:
        yield pb.WatchConfigResponse(snapshot=pb.Snapshot(revision=3, configs=[VOICE]))
        change = pb.Change(revision=4, config=VOICE, reason=pb.CHANGE_REASON_ADMIN_UPDATE)
        yield pb.WatchConfigResponse(change=change)


@pytest.fixture(scope="module")
def hostile() -> Iterator[str]:
    """The hostile server's target."""
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    pbg.add_StageConfigServiceServicer_to_server(HostileServicer(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        yield f"127.0.0.1:{port}"
    finally:
        server.stop(grace=None).wait(10)


def assert_printable(text: str) -> None:
    """Nothing but printable characters, spaces and line breaks."""
    raw = {
        f"U+{ord(ch):04X}"
        for ch in text
        if ch != "\n" and unicodedata.category(ch) in {"Cc", "Cf", "Zl", "Zp", "Cs", "Co"}
    }
    assert not raw, f"unescaped control characters {sorted(raw)} in:\n{text!r}"


def strings(value: object) -> Iterator[str]:
    """Every string in a decoded JSON value."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from strings(item)


COMMANDS = [
    ("status",),
    ("get", "VOICE"),
    ("models", "VOICE"),
    ("history",),
    ("watchers",),
    ("watch", "--timeout", "5"),
]


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: c[0])
def test_every_command_escapes_control_characters(hostile: str, command: tuple[str, ...]) -> None:
    result = run_ctl(hostile, *command, token=None)
    assert_printable(result.stdout)
    assert_printable(result.stderr)
    # Shown, escaped — not dropped: an admin can still see what the server sent.
    assert "\\x1b]0;owned\\x07" in result.stdout
    assert "\\u202e" in result.stdout


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: c[0])
def test_json_output_stays_valid_json_with_the_same_strings(
    hostile: str, command: tuple[str, ...]
) -> None:
    result = run_ctl(hostile, "--json", *command, token=None)
    assert_printable(result.stdout)
    documents = [json.loads(line) for line in result.stdout.splitlines()]
    assert documents
    assert any(EVIL in text for text in strings(documents))  # the same strings, decoded


def test_error_messages_are_escaped_too(hostile: str) -> None:
    for json_flag in ((), ("--json",)):
        result = run_ctl(
            hostile,
            *json_flag,
            "set",
            "VOICE",
            "--provider",
            "SPEECHKIT",
            "--model",
            "alena",
            token=None,
            stdin="AQVN-key-0000\n",
        )
        assert result.code != 0
        assert_printable(result.stderr)
        assert "refusal" in result.stderr
