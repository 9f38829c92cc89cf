"""The admin tools against a server newer than they are (``newer_server``): enum values
they do not know never make ``AdminClient``, ``stageconfigctl`` or the web page fail.

What they do with them: a stage they cannot name is left out (with one WARNING per
value); a provider kind they cannot name is shown as ``UNKNOWN(99)`` and the stage keeps
its revision; statuses, causes, sources and reasons read UNSPECIFIED.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterator

import httpx
import pytest

from stageconfig import (
    AdminClient,
    ChangeReason,
    ConfigSource,
    ConfigStatus,
    ProviderKind,
    StageType,
    StatusCause,
)
from stageconfig.admin import ChangeEvent, HeartbeatEvent, RolloutState, SnapshotEvent
from tests.admin.conftest import run_ctl
from tests.admin.newer_server import VOICE_KEY, NewerServer
from tests.admin.web_process import WebProcess, log_in_over_http

_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


@pytest.fixture(scope="module")
def newer() -> Iterator[NewerServer]:
    with NewerServer() as server:
        yield server


def test_admin_client_reads_what_it_knows_of_a_newer_server(
    newer: NewerServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="stageconfig.admin")
    with AdminClient(newer.target, timeout=10) as admin:
        overview = admin.list_configs()
        assert [v.stage_type for v in overview.stages] == [
            StageType.POEM,
            StageType.VOICE,
            StageType.SONG,
        ]
        poem = overview.stage("POEM")
        assert (poem.config, poem.unknown_provider_kind, poem.provider) == (None, 99, "UNKNOWN(99)")
        assert (poem.source, poem.revision) == (ConfigSource.UNSPECIFIED, 7)
        assert poem.allowed_providers == (
            ProviderKind.YANDEX_GPT,
            ProviderKind.GEMINI,
            ProviderKind.OPENAI,
        )
        voice = overview.stage("VOICE")
        assert voice.config is not None
        assert (voice.config.status, voice.config.status_cause, voice.config.source) == (
            ConfigStatus.UNSPECIFIED,
            StatusCause.UNSPECIFIED,
            ConfigSource.UNSPECIFIED,
        )
        assert voice.revision == 8
        assert voice.config.api_key == "AQVN-…7777"  # masked, though sent in plaintext
        assert voice.rollout is not None
        assert voice.rollout.state is RolloutState.UNSPECIFIED
        assert voice.rollout.candidate is not None
        assert voice.rollout.candidate.api_key == "AQVN-…7777"
        assert (voice.rollout.canary.clients, voice.rollout.stable.clients) == (1, 3)
        song = overview.stage("SONG")
        assert (song.config, song.allowed_providers, song.revision) == (None, (), 0)

        models = admin.list_models("POEM")
        assert (models.provider_kind, models.provider, models.status) == (
            None,
            "UNKNOWN(99)",
            ConfigStatus.UNSPECIFIED,
        )

        # The first page holds only an unknown stage's entry; the second is still read.
        entries = list(admin.iter_history())
        assert [(e.revision, e.stage_type) for e in entries] == [
            (8, StageType.VOICE),
            (7, StageType.POEM),
        ]
        assert {e.reason for e in entries} == {ChangeReason.UNSPECIFIED}

        (watcher,) = admin.list_watchers().watchers
        assert watcher.stage_types == (StageType.POEM,)

        (refreshed,) = admin.refresh_models()
        assert (refreshed.stage_type, refreshed.status) == (
            StageType.POEM,
            ConfigStatus.UNSPECIFIED,
        )

        events = list(admin.watch(duration=10))  # the server ends the stream itself
    snapshot, change, heartbeat = events
    assert isinstance(snapshot, SnapshotEvent)
    assert [c.stage_type for c in snapshot.configs] == [StageType.VOICE]
    assert isinstance(change, ChangeEvent)
    assert (change.revision, change.reason) == (12, ChangeReason.UNSPECIFIED)
    assert isinstance(heartbeat, HeartbeatEvent)

    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 2, warnings  # once per unknown value, however often it came
    assert any("stage_type=99" in w for w in warnings)
    assert any("the POEM config" in w and "provider_kind=99" in w for w in warnings)


def test_stageconfigctl_shows_a_newer_server(newer: NewerServer) -> None:
    target = newer.target
    status = run_ctl(target, "status", token=None)
    assert status.code == 0, status.stderr
    table_lines = status.stdout.split("\nhead revision")[0].splitlines()[1:]
    rows = {line.split()[0]: line for line in table_lines}
    assert set(rows) == {"POEM", "VOICE", "SONG"}
    assert "UNKNOWN(99)" in rows["POEM"]
    assert "upgrade stageconfig" in rows["POEM"]
    assert rows["POEM"].split()[4] == "7"  # the revision column
    assert "UNSPECIFIED" in rows["VOICE"]
    assert "AQVN-…7777" in rows["VOICE"]
    assert "UNCONFIGURED" in rows["SONG"]
    assert "stageconfigctl: warning: left out:" in status.stderr
    assert "stage_type=99" in status.stderr
    assert VOICE_KEY not in status.stdout + status.stderr
    assert "VOICE rollout: candidate revision 9 (SPEECHKIT model-of-tomorrow)" in status.stdout
    rollout = run_ctl(target, "rollout", "status", "VOICE", token=None)
    assert rollout.code == 0, rollout.stderr
    assert "  state        UNSPECIFIED" in rollout.stdout
    assert "AQVN-…7777" in rollout.stdout
    assert VOICE_KEY not in rollout.stdout

    as_json = json.loads(run_ctl(target, "--json", "status", token=None).stdout)
    poem = as_json["stages"][0]
    assert (poem["stage_type"], poem["unknown_provider_kind"], poem["revision"]) == ("POEM", 99, 7)

    got = run_ctl(target, "get", "POEM", token=None)
    assert got.code == 0, got.stderr
    assert "UNKNOWN(99)" in got.stdout

    models = run_ctl(target, "models", "POEM", token=None)
    assert models.code == 0, models.stderr
    assert models.stdout.startswith("POEM: UNKNOWN(99), status UNSPECIFIED")

    history = run_ctl(target, "history", token=None)
    assert history.code == 0, history.stderr
    revisions = [line.split()[0] for line in history.stdout.splitlines()[1:]]
    assert revisions == ["8", "7"]
    assert "UNSPECIFIED" in history.stdout

    watchers = run_ctl(target, "watchers", token=None)
    assert watchers.code == 0, watchers.stderr
    assert "worker-of-tomorrow" in watchers.stdout
    assert " POEM " in watchers.stdout

    watch = run_ctl(target, "watch", "--heartbeats", "--timeout", "10", token=None)
    assert watch.code == 0, watch.stderr
    lines = watch.stdout.splitlines()
    assert len(lines) == 3, watch.stdout
    assert " snapshot revision 9: VOICE SPEECHKIT model-of-tomorrow UNSPECIFIED" in lines[0]
    assert " change revision 12 (UNSPECIFIED): VOICE " in lines[1]
    assert " heartbeat head revision 12" in lines[2]
    assert VOICE_KEY not in watch.stdout


def test_the_web_page_shows_a_newer_server(newer: NewerServer) -> None:
    web = WebProcess(newer.target)
    try:
        with httpx.Client(base_url=web.url) as browser:
            assert log_in_over_http(browser, "any-token-the-newer-server-takes").status_code == 303
            page = browser.get("/admin/providers")
            assert page.status_code == 200, page.text
            assert [*re.findall(r'data-stage="(\w+)"', page.text)] == ["POEM", "VOICE", "SONG"]
            poem = page.text[
                page.text.index('id="stage-POEM"') : page.text.index('id="stage-VOICE"')
            ]
            assert 'data-testid="provider">UNKNOWN(99)<' in poem
            assert 'data-testid="revision">7<' in poem
            assert 'value="7"' in poem  # a save is conditional on the stored revision
            # The provider option from the contract, with its label and hint.
            assert "Folder ID" in poem
            assert "the Yandex Cloud folder the key belongs to" in poem
            assert 'data-testid="status">UNSPECIFIED<' in page.text
            assert "AQVN-…7777" in page.text
            assert VOICE_KEY not in page.text

            csrf = _CSRF.search(page.text)
            assert csrf is not None
            saved = browser.post(
                "/admin/providers/update",
                data={
                    "csrf_token": csrf.group(1),
                    "stage_type": "VOICE",
                    "provider_kind": "SPEECHKIT",
                    "expected_revision": "8",
                },
            )
            assert saved.status_code == 303, saved.text
            refreshed = browser.post(
                "/admin/providers/refresh", data={"csrf_token": csrf.group(1), "stage_type": "POEM"}
            )
            assert refreshed.status_code == 303
            after = browser.get("/admin/providers").text
            assert "Saved: revision 10, SPEECHKIT model-of-tomorrow, status UNSPECIFIED." in after
            assert "Models refreshed: 0 offered, status UNSPECIFIED." in after
    finally:
        web.stop()
