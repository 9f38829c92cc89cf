"""The short chaos runs (the long one is ``scripts/chaos --kills 50 --updates 1000``), and
proof that the checker notices what it claims to check."""

from __future__ import annotations

from pathlib import Path

from stageconfig_contract.v1 import stage_config_pb2 as pb
from tests.chaos.checker import (
    Attempt,
    ChaosConfig,
    History,
    check_attempts,
    check_watcher,
    run_chaos,
)


def test_sqlite_server_killed_under_load_loses_nothing_and_shows_nothing_uncommitted(
    tmp_path: Path,
) -> None:
    report = run_chaos(ChaosConfig(kills=3, updates=60, watchers=3, workdir=tmp_path))
    print("\n" + report.summary())
    assert report.violations == []
    assert (report.acknowledged, len(report.kills), report.watchers) == (60, 3, 3)
    assert all(k.integrity == "ok" for k in report.kills)
    assert report.head >= 60


def test_postgres_replicas_killed_in_turn_lose_nothing(tmp_path: Path) -> None:
    report = run_chaos(
        ChaosConfig(kills=3, updates=60, watchers=3, postgres=True, replicas=3, workdir=tmp_path)
    )
    print("\n" + report.summary())
    assert report.violations == []
    assert (report.acknowledged, len(report.kills)) == (60, 3)
    # In turn: each of the three replicas was killed once.
    assert len({k.target for k in report.kills}) == 3


# -- the checker catches what it claims ------------------------------------------------------


def _entry(revision: int, model: str, comment: str, key: str = "aaaa") -> pb.HistoryEntry:
    changes = [("model", model)]
    if revision == 1:
        changes = [
            ("provider_kind", "SPEECHKIT"),
            ("api_key", f"fingerprint {key}"),
            ("model", model),
            ("status", "ACTIVE"),
        ]
    return pb.HistoryEntry(
        revision=revision,
        stage_type=pb.STAGE_TYPE_VOICE,
        reason=pb.CHANGE_REASON_ADMIN_UPDATE,
        comment=comment,
        changes=[pb.FieldChange(field=f, new_value=v) for f, v in changes],
    )


def _voice(revision: int, model: str) -> dict[str, list[object]]:
    return {"VOICE": [revision, "SPEECHKIT", model, "ACTIVE", "aaaa"]}


def test_the_checker_reports_lost_phantom_and_uncommitted_states() -> None:
    history = History.replay(
        [_entry(1, "alena", "u1"), _entry(2, "jane", "u2"), _entry(4, "ermil", "nobody")]
    )
    attempts = [
        Attempt("u1", "VOICE", "SPEECHKIT", "alena", "aaaa", "acknowledged", 1),
        Attempt("u2", "VOICE", "SPEECHKIT", "jane", None, "rejected", code="ABORTED"),
        Attempt("u3", "VOICE", "SPEECHKIT", "zahar", None, "acknowledged", 3),
    ]
    found = "\n".join(check_attempts(history, attempts))
    assert "not 1..4: missing [3]" in found
    assert "an update nobody made ('nobody')" in found
    assert "u2 was refused (ABORTED) yet stored at revision 2" in found
    assert "acknowledged update u3 (revision 3) is not in the history" in found

    records = [
        {"kind": "change", "revision": 1, "configs": _voice(1, "alena")},
        {"kind": "change", "revision": 2, "configs": _voice(2, "zahar")},  # never committed
        {"kind": "revision", "revision": 2, "stages": {"VOICE": 2}},
        {"kind": "revision", "revision": 1, "stages": {"VOICE": 1}},  # went back
        {"kind": "final", "revision": 2, "configs": _voice(2, "jane")},  # head is 4
    ]
    found = "\n".join(check_watcher(7, records, history))
    assert "watcher 7 held at revision 2" in found
    assert "zahar" in found
    assert "watcher 7: sampled revision 1 after 2" in found
    assert "watcher 7 ended at revision 2" in found

    faithful = [
        {"kind": "change", "revision": 1, "configs": _voice(1, "alena")},
        {"kind": "revision", "revision": 1, "stages": {"VOICE": 1}},
        {"kind": "change", "revision": 4, "configs": _voice(4, "ermil")},  # 2 coalesced away
        {"kind": "revision", "revision": 4, "stages": {"VOICE": 4}},
        {"kind": "final", "revision": 4, "configs": _voice(4, "ermil")},
    ]
    assert check_watcher(7, faithful, history) == []
