"""The client's status reports against a real grpc server that records them
(``ReportRecorder``): a report within a second of every applied revision and a
keepalive every interval; validators refuse a stage's config (NACK, the stage keeps its
previous config, the other stages apply); a config the client cannot represent is
refused the same way; a report the server did not answer is retried with the same
sequence and counted once; outcomes pile up bounded while the server is away, drops
counted; and no report ever blocks ``get()``."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from stageconfig import ConfigClient, StageConfig, StageType, TimingOptions
from stageconfig_contract import __version__
from stageconfig_contract.facts import DURATION_BUCKETS
from stageconfig_contract.v1 import stage_config_pb2 as pb
from tests.client.newer_server import UNKNOWN, change, config, serve, snapshot
from tests.client.report_recorder import ReportRecorder
from tests.client.test_client import wait_until

POEM_KEY_MODEL = "gemini-2.5-flash"
POEM = config(pb.STAGE_TYPE_POEM, pb.PROVIDER_KIND_GEMINI, 3, POEM_KEY_MODEL)
VOICE = config(pb.STAGE_TYPE_VOICE, pb.PROVIDER_KIND_SPEECHKIT, 4, "alena")
BAD_POEM = config(pb.STAGE_TYPE_POEM, pb.PROVIDER_KIND_GEMINI, 5, "gemini-broken")
"""A model the tests' validator refuses (its key is ``key-gemini-broken-5``)."""


@pytest.fixture
def recorder() -> Iterator[tuple[ReportRecorder, str]]:
    servicer = ReportRecorder(snapshot(4, POEM, VOICE))
    server, target = serve(servicer)
    try:
        yield servicer, target
    finally:
        servicer.hold.set()
        server.stop(0)


def make_client(target: str, interval: float = 30.0, **options: object) -> ConfigClient:
    timing = TimingOptions(report_interval_seconds=interval)
    return ConfigClient(target, timing=timing, **options)  # type: ignore[arg-type]


def refuse_broken(config: StageConfig) -> None:
    if "broken" in config.model:
        # Quotes the key on purpose: the reason must reach the server masked.
        raise ValueError(f"model {config.model} is not allowed here (key {config.api_key})")


def test_reports_follow_every_applied_revision_within_a_second(
    recorder: tuple[ReportRecorder, str],
) -> None:
    servicer, target = recorder
    with make_client(target, client_id="worker-a") as client:
        client.wait_ready(10)
        ready_at = time.monotonic()
        wait_until(lambda: servicer.reports(), 1.0, "a report after the first snapshot")
        first = servicer.reports()[0]
        assert first.client_id == "worker-a"
        assert first.applied_revision == 4
        assert first.client_version == __version__
        assert first.report_interval_seconds == 30
        assert first.pid > 0
        assert first.host
        assert servicer.received[0].at - ready_at < 1.0
        assert servicer.stage(first, pb.STAGE_TYPE_POEM).revision == 3
        assert servicer.stage(first, pb.STAGE_TYPE_VOICE).revision == 4
        assert servicer.stage(first, pb.STAGE_TYPE_SONG).revision == 0

        sent = time.monotonic()
        servicer.send(change(6, config(pb.STAGE_TYPE_VOICE, pb.PROVIDER_KIND_SPEECHKIT, 6, "x")))
        wait_until(
            lambda: (last := servicer.last()) is not None and last.applied_revision == 6,
            1.0,
            "a report of revision 6 within a second",
        )
        assert time.monotonic() - sent < 1.0
        sequences = [r.sequence for r in servicer.reports()]
        assert sequences == sorted(set(sequences)), "every new report takes a new sequence"
    assert servicer.requests[0].client_version == __version__  # WatchConfig says it too


def test_a_keepalive_goes_out_every_interval_without_outcomes(
    recorder: tuple[ReportRecorder, str],
) -> None:
    servicer, target = recorder
    with make_client(target, interval=0.3) as client:
        client.wait_ready(10)
        wait_until(lambda: len(servicer.reports()) >= 4, 3, "keepalive reports")
        report = servicer.last()
        assert report is not None
        assert all(not stage.outcomes for stage in report.stages)
        assert report.report_interval_seconds == 1  # whole seconds, rounded up


def test_a_validator_refuses_one_stage_and_the_others_apply(
    recorder: tuple[ReportRecorder, str],
) -> None:
    servicer, target = recorder
    with make_client(target) as client:
        client.add_validator(refuse_broken)
        client.wait_ready(10)

        servicer.send(change(5, BAD_POEM))
        servicer.send(change(6, config(pb.STAGE_TYPE_VOICE, pb.PROVIDER_KIND_SPEECHKIT, 6, "x")))
        wait_until(lambda: client.snapshot().revision == 6, 5, "revision 6 reached")
        assert client.get(StageType.POEM).model == POEM_KEY_MODEL  # the previous config
        assert client.get(StageType.VOICE).model == "x"  # the other stage applied
        assert client.applied_revision == 4  # held below the refused revision 5

        def nacked() -> bool:
            last = servicer.last()
            return last is not None and servicer.stage(last, pb.STAGE_TYPE_POEM).nack_revision == 5

        wait_until(nacked, 1.0, "the NACK reported within a second")
        report = servicer.last()
        assert report is not None
        poem = servicer.stage(report, pb.STAGE_TYPE_POEM)
        assert poem.revision == 3  # what is in use
        assert "gemini-broken is not allowed" in poem.nack_reason
        assert "key-gemini-broken-5" not in poem.nack_reason  # the key, masked
        assert report.applied_revision == 4
        assert servicer.stage(report, pb.STAGE_TYPE_VOICE).revision == 6

        # A tasks' outcome is attributed to the revision in use: the previous one.
        client.record_outcome(StageType.POEM, ok=True, duration_seconds=0.2)

        # The next good revision of the stage applies and clears the hold.
        servicer.send(change(7, config(pb.STAGE_TYPE_POEM, pb.PROVIDER_KIND_GEMINI, 7, "ok")))
        wait_until(lambda: client.applied_revision == 7, 5, "revision 7 applied")
        assert client.get(StageType.POEM).model == "ok"
        wait_until(
            lambda: (last := servicer.last()) is not None and last.applied_revision == 7,
            1.0,
            "revision 7 reported",
        )
        assert servicer.tasks_counted(pb.STAGE_TYPE_POEM) == (1, 0, 0)
        outcomes = [
            o for r in servicer.counted() for o in servicer.stage(r, pb.STAGE_TYPE_POEM).outcomes
        ]
        assert [o.revision for o in outcomes] == [3]
        assert len(outcomes[0].duration_buckets) == DURATION_BUCKETS
        assert outcomes[0].duration_buckets[2] == 1  # 0.2 s: up to 0.25 s


def test_a_refused_config_is_refused_again_after_a_reconnect_without_a_replay(
    recorder: tuple[ReportRecorder, str],
) -> None:
    servicer, target = recorder
    calls: list[int] = []

    def counting(config: StageConfig) -> None:
        calls.append(config.revision)
        refuse_broken(config)

    client = make_client(target)
    client.add_validator(counting)  # before start: the first snapshot passes it too
    with client:
        client.wait_ready(10)
        servicer.send(change(5, BAD_POEM))
        wait_until(lambda: client.snapshot().revision == 5, 5, "revision 5 reached")
        # A reconnect: the stream resumes after the refused revision (no replay), and a
        # fresh snapshot carrying it again is refused without running the validator.
        servicer.snapshot = snapshot(5, BAD_POEM, VOICE)
        servicer.end_stream()
        wait_until(lambda: len(servicer.requests) == 2, 10, "the client reconnects")
        assert servicer.requests[1].resume_revision == 5
        wait_until(lambda: client.state.value == "READY", 5, "ready again")
        assert client.get(StageType.POEM).model == POEM_KEY_MODEL
        assert calls == [3, 4, 5]  # the first snapshot's configs, then revision 5 once
        assert client.applied_revision == 4


def test_a_config_the_client_cannot_represent_is_nacked(
    recorder: tuple[ReportRecorder, str],
) -> None:
    servicer, target = recorder
    with make_client(target) as client:
        client.wait_ready(10)
        servicer.send(change(5, config(pb.STAGE_TYPE_POEM, UNKNOWN, 5, "future")))

        def nacked() -> bool:
            last = servicer.last()
            return last is not None and servicer.stage(last, pb.STAGE_TYPE_POEM).nack_revision == 5

        wait_until(nacked, 2.0, "the unreadable config NACKed")
        report = servicer.last()
        assert report is not None
        poem = servicer.stage(report, pb.STAGE_TYPE_POEM)
        assert "provider_kind=99" in poem.nack_reason
        assert poem.revision == 3
        assert client.get(StageType.POEM).model == POEM_KEY_MODEL


def test_a_report_not_answered_is_retried_with_its_sequence_and_counted_once(
    recorder: tuple[ReportRecorder, str],
) -> None:
    servicer, target = recorder
    with make_client(target, interval=0.5) as client:
        client.wait_ready(10)
        wait_until(lambda: servicer.counted(), 2, "the first report")
        servicer.fail_next = 2  # the server is away for two attempts
        servicer.lose_answers = 0
        client.record_outcome(StageType.POEM, ok=False, cause="TimeoutError")
        client.record_outcome(StageType.POEM, ok=True)
        wait_until(lambda: servicer.tasks_counted(pb.STAGE_TYPE_POEM) == (1, 1, 0), 10, "counted")

        # The answer is lost after the server counted the report: the retry is a duplicate.
        servicer.lose_answers = 1
        client.record_outcome(StageType.POEM, ok=True, retried=True)
        wait_until(lambda: servicer.tasks_counted(pb.STAGE_TYPE_POEM)[2] == 1, 10, "retried")
        wait_until(lambda: len(servicer.counted()) >= 5, 10, "more keepalives after that")
        assert servicer.tasks_counted(pb.STAGE_TYPE_POEM) == (1, 1, 1)

    by_sequence: dict[int, list[pb.ReportStatusRequest]] = {}
    for report in servicer.reports():
        by_sequence.setdefault(report.sequence, []).append(report)
    retried = {s: rs for s, rs in by_sequence.items() if len(rs) > 1}
    assert len(retried) == 2, "one report sent three times, one twice"
    for reports in retried.values():  # a retry is the same report, not a recount
        assert all(r == reports[0] for r in reports)
    assert sorted(len(rs) for rs in retried.values()) == [2, 3]
    assert client.outcomes_dropped == 0


def test_outcomes_pile_up_bounded_while_the_server_is_away(
    recorder: tuple[ReportRecorder, str],
) -> None:
    servicer, target = recorder
    with make_client(target) as client:
        client.wait_ready(10)
        wait_until(lambda: servicer.counted(), 2, "the first report")
        servicer.fail_next = 3  # away for the next three attempts
        # 70 distinct revisions of one stage (a worker that saw many changes while the
        # server was away): the 6 oldest entries go, their tasks counted as dropped.
        for revision in range(1, 71):
            client.record_outcome(StageType.POEM, ok=True, revision=revision)
            client.record_outcome(StageType.POEM, ok=False, cause="x" * 100, revision=revision)
        assert client.outcomes_dropped == 12

        servicer.send(change(5, config(pb.STAGE_TYPE_VOICE, pb.PROVIDER_KIND_SPEECHKIT, 5, "y")))
        # One report carries at most 16 revisions of a stage (the server refuses more):
        # the 64 left go out in four reports, one right after the other.
        wait_until(
            lambda: servicer.tasks_counted(pb.STAGE_TYPE_POEM) == (64, 64, 0), 10, "all sent"
        )
        assert servicer.fail_next == 0
        reports = [r for r in servicer.counted() if servicer.stage(r, pb.STAGE_TYPE_POEM).outcomes]
        assert [len(servicer.stage(r, pb.STAGE_TYPE_POEM).outcomes) for r in reports] == [16] * 4
        outcomes = [o for r in reports for o in servicer.stage(r, pb.STAGE_TYPE_POEM).outcomes]
        assert [o.revision for o in outcomes] == list(range(7, 71))
        assert dict(outcomes[0].failures_by_cause) == {"x" * 64: 1}  # cut to 64 characters
        assert client.outcomes_dropped == 12


def test_causes_are_bounded_per_revision(recorder: tuple[ReportRecorder, str]) -> None:
    servicer, target = recorder
    with make_client(target) as client:
        client.wait_ready(10)
        for n in range(40):
            client.record_outcome(StageType.VOICE, ok=False, cause=f"Error{n}\n")
        client.record_outcome(StageType.VOICE, ok=False)
        with pytest.raises(ValueError, match="duration_seconds"):
            client.record_outcome(StageType.VOICE, ok=True, duration_seconds=-1)
        servicer.send(change(5, config(pb.STAGE_TYPE_POEM, pb.PROVIDER_KIND_GEMINI, 5, "z")))
        wait_until(lambda: servicer.tasks_counted(pb.STAGE_TYPE_VOICE)[1] == 41, 2, "sent")
        report = servicer.counted()[-1]
        (outcome,) = servicer.stage(report, pb.STAGE_TYPE_VOICE).outcomes
        causes = dict(outcome.failures_by_cause)
        assert len(causes) == 32
        assert causes["Error0"] == 1
        assert causes["other"] == 10  # the 9 causes after the 31 first, and the one without
        assert "Error30" in causes
        assert "Error31" not in causes
        assert sum(causes.values()) == 41


def test_no_report_blocks_get(recorder: tuple[ReportRecorder, str]) -> None:
    servicer, target = recorder
    servicer.hold.clear()  # ReportStatus answers nothing until released
    with make_client(target, interval=0.2) as client:
        client.wait_ready(10)
        wait_until(lambda: servicer.arrivals > 0, 2, "a report hangs on the server")
        slowest = 0.0
        deadline = time.monotonic() + 1.5
        while time.monotonic() < deadline:
            started = time.perf_counter()
            client.get(StageType.POEM)
            client.record_outcome(StageType.POEM, ok=True)
            slowest = max(slowest, time.perf_counter() - started)
        # A hung report lasts its whole call timeout (1 s here): a get() that waited on
        # it would take that long. The bound leaves room for a loaded machine.
        assert slowest < 0.3, f"a get() took {slowest:.3f} s while a report hung"
        assert client.reports_sent == 0
        # A change still applies while the report hangs.
        servicer.send(change(5, config(pb.STAGE_TYPE_VOICE, pb.PROVIDER_KIND_SPEECHKIT, 5, "q")))
        wait_until(lambda: client.get(StageType.VOICE).model == "q", 2, "the change applied")
        servicer.hold.set()
        wait_until(lambda: client.reports_sent > 0, 10, "the report delivered once released")


def test_a_restarted_process_with_the_same_client_id_is_not_a_retry(
    recorder: tuple[ReportRecorder, str],
) -> None:
    servicer, target = recorder
    with make_client(target, client_id="same") as first:
        first.wait_ready(10)
        wait_until(lambda: first.reports_sent >= 1, 2, "first reports")
    with make_client(target, client_id="same") as second:
        second.wait_ready(10)
        wait_until(lambda: second.reports_sent >= 1, 2, "second reports")
    assert all(r.counted for r in servicer.received)
