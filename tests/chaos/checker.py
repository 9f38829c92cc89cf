"""The chaos checker: real processes, injected crashes, and a comparison of what every
party saw against the database.

    python -m tests.chaos [--kills 3] [--updates 60] [--watchers 3] [--postgres] [--seed N]

What runs (all real, all on 127.0.0.1):

- the server: ``python -m stageconfig_server serve`` on SQLite (one process, killed and
  restarted on the same file and port), or with ``--postgres`` on a fresh PostgreSQL
  database (``--replicas`` processes, killed in turn and restarted);
- ``--watchers`` worker processes (``tests.chaos.watcher``), each a real ``ConfigClient``
  given every replica, recording every revision and config it applies;
- an updater (a thread here) issuing ``--updates`` acknowledged UpdateConfig calls over
  all four stages (SpeechKit needs no network; the other providers are the fake
  provider server), each tagged with a unique comment so its revision can be found;
- a killer (a thread) sending SIGKILL at ``--kills`` random moments of that stream, a
  few milliseconds after an acknowledgement so most kills land on a write in flight.
  On SQLite it then checks, before the restart, that ``PRAGMA integrity_check`` is ok
  and that every write acknowledged so far is in the file.

What is checked afterwards (each failure is a violation; the exit code is 1 if any):

1. every acknowledged update is in the history (GetConfigHistory) at the revision it was
   acknowledged with, with the stage, provider, model and key it asked for; a rejected
   one is not; no update appears twice; every ADMIN_UPDATE revision is one the updater
   attempted; revisions are 1..head with no gap;
2. every watcher's revisions strictly increase (changes and sampled revisions alike);
3. every watcher ends on the database's final state (revision and every stage);
4. no watcher ever held a config that was never committed: at every revision it
   applied, each stage it held equals the state the history gives at that revision
   (revision, provider, model, status, and the fingerprint of the plaintext key);
5. the config table agrees with the history's final state, and (PostgreSQL) every
   replica reaches the head.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import os
import random
import secrets
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc

from stageconfig_contract.v1 import stage_config_pb2 as pb
from stageconfig_contract.v1 import stage_config_pb2_grpc as pbg
from stageconfig_server.crypto import fingerprint
from stageconfig_server.domain import ProviderKind
from stageconfig_server.providers import pika, suno
from tests.fakes.provider_server import DEFAULT_MODELS, FakeProviders
from tests.support.servers import ServerProcess, server_env

STAGES = ("POEM", "VOICE", "SONG", "CLIP")
VOICE_MODELS = ("alena", "jane", "filipp", "ermil", "omazh", "zahar")
RPC_TIMEOUT_SECONDS = 10.0
UNKNOWN_OUTCOME_CODES = frozenset(
    {
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.CANCELLED,
        grpc.StatusCode.UNKNOWN,
        grpc.StatusCode.INTERNAL,
    }
)
"""The call may or may not have been committed (the server died around it). INTERNAL
is one of them, but also a violation: it means a server bug, not a crash."""
_FINGERPRINT_PREFIX = "fingerprint "


@dataclass(frozen=True)
class ChaosConfig:
    """One chaos run."""

    kills: int = 3
    """SIGKILLs during the update stream."""
    updates: int = 60
    """Acknowledged UpdateConfig calls to make."""
    watchers: int = 3
    """Worker processes watching every stage."""
    postgres: bool = False
    """Replicas on PostgreSQL instead of one server on SQLite."""
    replicas: int = 3
    """Server processes with ``postgres`` (killed in turn)."""
    seed: int | None = None
    """Seed of every random choice (printed, so a failing run can be repeated)."""
    workdir: Path | None = None
    """Where databases, logs and watcher records go (default: a temp dir, removed)."""
    converge_seconds: float = 30.0
    """How long watchers and replicas may take to reach the head at the end."""


@dataclass
class Attempt:
    """One UpdateConfig call and what became of it."""

    id: str
    stage: str
    provider: str
    model: str
    key_fingerprint: str | None
    """Of the key sent; None when the call reused the stored key."""
    outcome: str = "pending"
    """``acknowledged`` (written), ``unchanged`` (answered, identical to the stored
    config: nothing written), ``rejected`` (a definite refusal) or ``unknown``."""
    revision: int = 0
    response: tuple[str, str, str, str] | None = None
    """(provider, model, status, key fingerprint) the server answered with."""
    code: str = ""
    details: str = ""


@dataclass
class Kill:
    """One SIGKILL and what the database looked like right after it."""

    target: str
    acknowledged_before: int
    write_in_flight: bool
    integrity: str = "not checked"
    lost: list[int] = field(default_factory=list)


@dataclass
class ChaosReport:
    """What a run did and every violation it found."""

    backend: str
    seed: int
    attempted: int = 0
    acknowledged: int = 0
    unchanged: int = 0
    """Answered as identical to the stored config (nothing to write)."""
    unknown: int = 0
    unknown_committed: int = 0
    rejected: int = 0
    kills: list[Kill] = field(default_factory=list)
    watchers: int = 0
    head: int = 0
    watcher_changes: int = 0
    watcher_reconnects: int = 0
    elapsed: float = 0.0
    violations: list[str] = field(default_factory=list)

    def summary(self) -> str:
        """The counts, as scripts/chaos prints them."""
        in_flight = sum(k.write_in_flight for k in self.kills)
        integrity = {k.integrity for k in self.kills}
        lines = [
            f"chaos ({self.backend}, seed {self.seed}): updates {self.acknowledged}, "
            f"kills {len(self.kills)}, watchers {self.watchers}, "
            f"violations {len(self.violations)}",
            f"  updates: {self.acknowledged} acknowledged of {self.attempted} attempted "
            f"({self.unknown} outcome unknown, the server died around them, of which "
            f"{self.unknown_committed} committed; {self.rejected} rejected; "
            f"{self.unchanged} identical to the stored config, nothing written)",
            f"  kills: {len(self.kills)} SIGKILLs, {in_flight} with a write in flight; "
            f"integrity_check after each: {', '.join(sorted(integrity)) or '-'}",
            f"  watchers: {self.watchers} processes applied {self.watcher_changes} changes, "
            f"made {self.watcher_reconnects} reconnect attempts, all ending at revision "
            f"{self.head}",
            f"  took {self.elapsed:.1f} s",
        ]
        lines += [f"  VIOLATION: {v}" for v in self.violations[:50]]
        if len(self.violations) > 50:
            lines.append(f"  … and {len(self.violations) - 50} more")
        return "\n".join(lines)


# -- the database's truth ---------------------------------------------------------------


def _enum_name(enum: Any, value: int, prefix: str) -> str:
    name: str = enum.Name(value)
    return name.removeprefix(prefix)


@dataclass
class History:
    """The revision log replayed: every stage's state at every revision."""

    entries: list[pb.HistoryEntry]
    states: dict[int, dict[str, dict[str, str]]]
    """revision → stage → fields (provider_kind, model, status, api_key fingerprint) and
    ``revision``: the state of every stored stage right after that revision."""

    @property
    def head(self) -> int:
        """The newest revision."""
        return self.entries[-1].revision if self.entries else 0

    def at(self, revision: int) -> dict[str, dict[str, str]]:
        """The state after ``revision`` (empty before the first)."""
        if revision <= 0:
            return {}
        return self.states.get(revision, {})

    @classmethod
    def replay(cls, entries: list[pb.HistoryEntry]) -> History:
        """Apply each entry's diff in revision order."""
        entries = sorted(entries, key=lambda e: e.revision)
        current: dict[str, dict[str, str]] = {}
        states: dict[int, dict[str, dict[str, str]]] = {}
        for entry in entries:
            stage = _enum_name(pb.StageType, entry.stage_type, "STAGE_TYPE_")
            fields = dict(current.get(stage, {}))
            for change in entry.changes:
                fields[change.field] = change.new_value
            fields["revision"] = str(entry.revision)
            current = {**current, stage: fields}
            states[entry.revision] = current
        return cls(entries, states)


def _expected(fields: dict[str, str]) -> list[Any]:
    """A replayed stage in the watcher's record format."""
    return [
        int(fields["revision"]),
        fields.get("provider_kind", ""),
        fields.get("model", ""),
        fields.get("status", ""),
        fields.get("api_key", "").removeprefix(_FINGERPRINT_PREFIX),
    ]


def read_history(target: str) -> History:
    """Every history entry, all pages."""
    entries: list[pb.HistoryEntry] = []
    with grpc.insecure_channel(target) as channel:
        stub = pbg.StageConfigServiceStub(channel)
        token = ""
        while True:
            page = stub.GetConfigHistory(
                pb.GetConfigHistoryRequest(page_size=100, page_token=token),
                timeout=RPC_TIMEOUT_SECONDS,
                wait_for_ready=True,
            )
            entries.extend(page.entries)
            token = page.next_page_token
            if not token:
                return History.replay(entries)


def read_configs(target: str) -> tuple[int, dict[str, list[Any]]]:
    """ListConfigs: the head and every stored stage in the watcher's record format."""
    with grpc.insecure_channel(target) as channel:
        listed = pbg.StageConfigServiceStub(channel).ListConfigs(
            pb.ListConfigsRequest(), timeout=RPC_TIMEOUT_SECONDS, wait_for_ready=True
        )
    configs: dict[str, list[Any]] = {}
    for view in listed.stages:
        config = view.config
        if config.source != pb.CONFIG_SOURCE_DATABASE:
            continue
        configs[_enum_name(pb.StageType, view.stage_type, "STAGE_TYPE_")] = [
            config.revision,
            _enum_name(pb.ProviderKind, config.provider_kind, "PROVIDER_KIND_"),
            config.model,
            _enum_name(pb.ConfigStatus, config.status, "CONFIG_STATUS_"),
            config.api_key_fingerprint,
        ]
    return listed.head_revision, configs


def sqlite_checks(db_path: Path, acknowledged: Sequence[Attempt]) -> tuple[str, list[int]]:
    """``PRAGMA integrity_check`` and the acknowledged revisions missing from the file
    (read directly, with no server running)."""
    conn = sqlite3.connect(db_path, timeout=30)
    try:
        integrity = "; ".join(row[0] for row in conn.execute("PRAGMA integrity_check"))
        stored = dict(conn.execute("SELECT revision, comment FROM revision_log").fetchall())
    finally:
        conn.close()
    lost = [a.revision for a in acknowledged if stored.get(a.revision) != a.id]
    return integrity, lost


# -- the servers --------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class Servers:
    """The server processes, each on a fixed port so a restart comes back at the same
    address: ``kill(n)`` kills one (in turn), ``restart`` checks what the kill left and
    starts it again."""

    def __init__(
        self, workdir: Path, fake: FakeProviders, count: int, database_url: str | None
    ) -> None:
        self.db_path = workdir / "stageconfig.db"
        self.database_url = database_url
        self.processes: list[ServerProcess] = []
        for _ in range(count):
            extra = {
                "STAGECONFIG_ADDRESS": f"127.0.0.1:{_free_port()}",
                "STAGECONFIG_LOG_LEVEL": "WARNING",
            }
            if database_url is not None:
                extra["STAGECONFIG_DATABASE_URL"] = database_url
            self.processes.append(ServerProcess(server_env(self.db_path, fake, **extra)))

    @property
    def targets(self) -> list[str]:
        """host:port of every server."""
        return [p.env["STAGECONFIG_ADDRESS"] for p in self.processes]

    def start(self) -> None:
        """Start every server (one after the other: migrations run once, then no-op)."""
        for process in self.processes:
            process.start(timeout=60)

    def kill(self, number: int) -> ServerProcess:
        """SIGKILL server ``number % count`` (in turn) and wait until it is gone."""
        process = self.processes[number % len(self.processes)]
        process.kill()
        return process

    def restart(self, process: ServerProcess, kill: Kill, acknowledged: list[Attempt]) -> None:
        """On SQLite, check what the kill left in the file; then start the server again
        on the same database and address."""
        if self.database_url is None:
            kill.integrity, kill.lost = sqlite_checks(self.db_path, acknowledged)
        process.start(timeout=60)

    def stop(self) -> None:
        """SIGTERM every server."""
        for process in self.processes:
            process.stop()

    def logs(self) -> str:
        """Everything the servers printed (for a failing run)."""
        return "\n".join(p.log for p in self.processes)


# -- the updater and the killer -------------------------------------------------------------


class Updater:
    """Issues UpdateConfig calls until ``goal`` are acknowledged, recording each attempt.

    ``kill_points`` are acknowledged-update counts at which the killer strikes; the
    updater goes at most one write past a point before that kill was issued, so every
    kill happens during the stream (and usually during that one write).
    """

    def __init__(
        self, targets: list[str], goal: int, kill_points: list[int], rng: random.Random
    ) -> None:
        self._targets = targets
        self._goal = goal
        self._rng = rng
        self._channels = {t: grpc.insecure_channel(t) for t in targets}
        self._index = 0
        self._keyed: set[str] = set()  # providers with an acknowledged key stored
        self.kill_points = kill_points
        self.kills_issued = 0
        self.acknowledged_count = 0
        self.attempts: list[Attempt] = []
        self.changed = threading.Condition()
        self.in_flight = False
        self.stop = threading.Event()
        self.error: BaseException | None = None

    def _may_write(self) -> bool:
        if self.stop.is_set() or self.kills_issued >= len(self.kill_points):
            return True
        return self.acknowledged_count <= self.kill_points[self.kills_issued]

    def _operation(self, number: int) -> tuple[pb.UpdateConfigRequest, Attempt]:
        rng = self._rng
        stage = rng.choices(STAGES, weights=(25, 50, 15, 10))[0]
        if stage == "VOICE":
            provider, models = "SPEECHKIT", VOICE_MODELS
        elif stage == "POEM":
            provider = rng.choice(("OPENAI", "GEMINI"))
            models = DEFAULT_MODELS[ProviderKind(provider)]
        elif stage == "SONG":
            provider, models = "SUNO", suno.MODELS
        else:
            provider, models = "PIKA", pika.MODELS[:4]
        model = rng.choice(models)
        attempt_id = f"chaos-{number}-{secrets.token_hex(3)}"
        request = pb.UpdateConfigRequest(
            stage_type=pb.StageType.Value(f"STAGE_TYPE_{stage}"),
            provider_kind=pb.ProviderKind.Value(f"PROVIDER_KIND_{provider}"),
            model=model,
            comment=attempt_id,
        )
        key_fingerprint = None
        # A new key now and then (and whenever none is known to be stored), else reuse.
        if provider not in self._keyed or rng.random() < 0.3:
            request.api_key = f"{provider.lower()}-chaos-{number}-{secrets.token_hex(8)}"
            key_fingerprint = fingerprint(request.api_key)
        return request, Attempt(attempt_id, stage, provider, model, key_fingerprint)

    def run(self) -> None:
        """The update loop (a thread)."""
        failures_in_a_row = 0
        number = 0
        try:
            while not self.stop.is_set() and self.acknowledged_count < self._goal:
                with self.changed:
                    self.changed.wait_for(self._may_write)
                if self.stop.is_set():
                    break
                number += 1
                request, attempt = self._operation(number)
                target = self._targets[self._index % len(self._targets)]
                stub = pbg.StageConfigServiceStub(self._channels[target])
                with self.changed:
                    self.attempts.append(attempt)
                self.in_flight = True
                try:
                    # One server: wait for it to come back. Several: move on to the next
                    # at once, and wait only when a whole round failed.
                    wait = len(self._targets) == 1 or failures_in_a_row >= len(self._targets)
                    answer = stub.UpdateConfig(
                        request, timeout=RPC_TIMEOUT_SECONDS, wait_for_ready=wait
                    )
                except grpc.RpcError as exc:
                    code = exc.code() if callable(getattr(exc, "code", None)) else None
                    with self.changed:
                        attempt.code = code.name if code is not None else "?"
                        details = getattr(exc, "details", None)
                        attempt.details = details() if callable(details) else ""
                        known = code is not None and code not in UNKNOWN_OUTCOME_CODES
                        attempt.outcome = "rejected" if known else "unknown"
                    failures_in_a_row += 1
                    self._index += 1
                    continue
                finally:
                    self.in_flight = False
                failures_in_a_row = 0
                config = answer.config
                with self.changed:
                    # An update identical to the stored config writes nothing (written
                    # is false) and answers the stage's current revision.
                    attempt.outcome = "acknowledged" if answer.written else "unchanged"
                    attempt.revision = config.revision
                    attempt.response = (
                        _enum_name(pb.ProviderKind, config.provider_kind, "PROVIDER_KIND_"),
                        config.model,
                        _enum_name(pb.ConfigStatus, config.status, "CONFIG_STATUS_"),
                        config.api_key_fingerprint,
                    )
                    self._keyed.add(attempt.provider)
                    if answer.written:  # the goal is written updates, not no-ops
                        self.acknowledged_count += 1
                    self.changed.notify_all()
            # The last kill point may be the last update: let that kill happen first.
            with self.changed:
                self.changed.wait_for(
                    lambda: self.stop.is_set() or self.kills_issued >= len(self.kill_points)
                )
        except BaseException as exc:  # reported by the run; the killer must not hang
            self.error = exc
        finally:
            with self.changed:
                self.stop.set()
                self.changed.notify_all()
            for channel in self._channels.values():
                channel.close()


class Killer:
    """Sends the kills at the updater's kill points."""

    def __init__(self, servers: Servers, updater: Updater, rng: random.Random) -> None:
        self._servers = servers
        self._updater = updater
        self._delays = [rng.uniform(0.0, 0.03) for _ in updater.kill_points]
        self.kills: list[Kill] = []
        self.error: BaseException | None = None

    def run(self) -> None:
        """The kill loop (a thread)."""
        updater = self._updater
        try:
            for number, point in enumerate(updater.kill_points):
                with updater.changed:
                    updater.changed.wait_for(
                        lambda p=point: updater.stop.is_set() or updater.acknowledged_count >= p
                    )
                if updater.stop.is_set():
                    return
                # A few milliseconds after the acknowledgement: usually mid-way through
                # the next write (validation, the provider call, or the commit itself).
                updater.stop.wait(self._delays[number])
                in_flight = updater.in_flight
                process = self._servers.kill(number)
                with updater.changed:
                    acknowledged = [a for a in updater.attempts if a.outcome == "acknowledged"]
                    updater.kills_issued += 1
                    updater.changed.notify_all()
                kill = Kill(
                    target=process.env["STAGECONFIG_ADDRESS"],
                    acknowledged_before=len(acknowledged),
                    write_in_flight=in_flight,
                )
                self.kills.append(kill)
                self._servers.restart(process, kill, acknowledged)
        except BaseException as exc:  # reported by the run; the updater must not hang
            self.error = exc
            updater.stop.set()
            with updater.changed:
                updater.changed.notify_all()


# -- the watchers -----------------------------------------------------------------------------


class Watchers:
    """The worker processes and their record files."""

    def __init__(self, workdir: Path, count: int, targets: list[str]) -> None:
        self.files = [workdir / f"watcher-{n}.jsonl" for n in range(count)]
        self.processes: list[subprocess.Popen[bytes]] = []
        self._targets = ",".join(targets)
        self._logs = [workdir / f"watcher-{n}.log" for n in range(count)]

    def start(self) -> None:
        """Start every worker (their stderr goes to a log file next to the records)."""
        root = Path(__file__).resolve().parents[2]
        env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join(filter(None, [str(root), os.environ.get("PYTHONPATH")])),
        }
        for n, (out, log) in enumerate(zip(self.files, self._logs, strict=True)):
            with log.open("wb") as stderr:
                self.processes.append(
                    subprocess.Popen(
                        [
                            sys.executable,
                            "-m",
                            "tests.chaos.watcher",
                            "--target",
                            self._targets,
                            "--out",
                            str(out),
                            "--id",
                            str(n),
                        ],
                        env=env,
                        cwd=root,
                        stdout=subprocess.DEVNULL,
                        stderr=stderr,
                    )
                )

    def records(self, n: int) -> list[dict[str, Any]]:
        """Worker ``n``'s records so far (a line being written is skipped)."""
        if not self.files[n].exists():
            return []
        records = []
        for line in self.files[n].read_text(encoding="utf-8").splitlines():
            with contextlib.suppress(json.JSONDecodeError):
                records.append(json.loads(line))
        return records

    def reconnects(self, n: int) -> int:
        """How many times worker ``n``'s stream was interrupted (from the client's log)."""
        text = self._logs[n].read_text(encoding="utf-8", errors="replace")
        return text.count("reconnecting in")

    def latest_revision(self, n: int) -> int | None:
        """The newest revision worker ``n`` applied (None before any)."""
        revisions = [r["revision"] for r in self.records(n) if r["kind"] == "revision"]
        return revisions[-1] if revisions else None

    def wait(self, predicate: Callable[[int], bool], timeout: float) -> list[int]:
        """Wait until ``predicate(n)`` holds for every worker; the ones that never did."""
        deadline = time.monotonic() + timeout
        pending = list(range(len(self.files)))
        while pending:
            pending = [n for n in pending if not predicate(n)]
            for n in pending:
                if self.processes[n].poll() is not None:
                    raise RuntimeError(
                        f"watcher {n} exited ({self.processes[n].returncode}):\n"
                        + self._logs[n].read_text(errors="replace")[-3000:]
                    )
            if not pending or time.monotonic() > deadline:
                return pending
            time.sleep(0.05)
        return []

    def stop(self) -> None:
        """SIGTERM every worker (it writes its final record) and wait for it."""
        for process in self.processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in self.processes:
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(5)


# -- the verdict ------------------------------------------------------------------------------


def check_attempts(history: History, attempts: Sequence[Attempt]) -> list[str]:
    """Acknowledged updates are in the history as asked; nothing else sneaked in."""
    violations: list[str] = []
    revisions = [e.revision for e in history.entries]
    if revisions != list(range(1, len(revisions) + 1)):
        missing = sorted(set(range(1, history.head + 1)) - set(revisions))
        violations.append(f"history revisions are not 1..{history.head}: missing {missing[:20]}")
    by_comment: dict[str, list[pb.HistoryEntry]] = {}
    for entry in history.entries:
        by_comment.setdefault(entry.comment, []).append(entry)
    by_id = {a.id: a for a in attempts}
    for comment, entries in by_comment.items():
        admin = [e for e in entries if e.reason == pb.CHANGE_REASON_ADMIN_UPDATE]
        if not admin:
            continue
        if comment not in by_id:
            violations.append(f"revision {admin[0].revision}: an update nobody made ({comment!r})")
        elif len(admin) > 1:
            violations.append(
                f"update {comment} was stored {len(admin)} times: {[e.revision for e in admin]}"
            )
    for attempt in attempts:
        if attempt.code == "INTERNAL":
            violations.append(f"update {attempt.id} failed with INTERNAL: {attempt.details}")
        stored = [
            e for e in by_comment.get(attempt.id, []) if e.reason == pb.CHANGE_REASON_ADMIN_UPDATE
        ]
        if attempt.outcome == "rejected" and stored:
            violations.append(
                f"update {attempt.id} was refused ({attempt.code}) yet stored at "
                f"revision {stored[0].revision}"
            )
        if attempt.outcome == "unknown" and stored:
            attempt.revision = stored[0].revision  # committed after all: check it too
        if attempt.outcome == "unchanged" and stored:
            violations.append(
                f"update {attempt.id} was answered as unchanged yet stored at revision "
                f"{stored[0].revision}"
            )
        if attempt.outcome not in ("acknowledged", "unchanged") and not stored:
            continue
        if attempt.outcome == "acknowledged" and not any(
            e.revision == attempt.revision for e in stored
        ):
            violations.append(
                f"acknowledged update {attempt.id} (revision {attempt.revision}) is not in "
                "the history"
            )
            continue
        fields = history.at(attempt.revision).get(attempt.stage)
        if fields is None or fields.get("revision") != str(attempt.revision):
            violations.append(f"revision {attempt.revision} is not a {attempt.stage} change")
            continue
        got = _expected(fields)
        if (got[1], got[2]) != (attempt.provider, attempt.model):
            violations.append(
                f"revision {attempt.revision} stored {got[1]}/{got[2]}, the update asked for "
                f"{attempt.provider}/{attempt.model}"
            )
        if attempt.key_fingerprint is not None and got[4] != attempt.key_fingerprint:
            violations.append(f"revision {attempt.revision} stored another key than was sent")
        if attempt.response is not None and attempt.response != (got[1], got[2], got[3], got[4]):
            violations.append(
                f"revision {attempt.revision}: the answer {attempt.response} differs from the "
                f"history {tuple(got[1:])}"
            )
    return violations


def check_watcher(n: int, records: Sequence[dict[str, Any]], history: History) -> list[str]:
    """One worker's records against the history."""
    violations: list[str] = []
    changes = [r for r in records if r["kind"] == "change"]
    samples = [r for r in records if r["kind"] == "revision"]
    for kind, sequence in (("change", changes), ("sampled", samples)):
        revisions = [r["revision"] for r in sequence]
        for before, after in itertools.pairwise(revisions):
            if after <= before:
                violations.append(f"watcher {n}: {kind} revision {after} after {before}")
    for record in changes:
        revision = record["revision"]
        expected = {stage: _expected(f) for stage, f in history.at(revision).items()}
        if record["configs"] != expected:
            violations.append(
                f"watcher {n} held at revision {revision} {record['configs']}, but the "
                f"database had {expected}"
            )
    for record in samples:
        revision = record["revision"]
        expected_revisions = {s: int(f["revision"]) for s, f in history.at(revision).items()}
        if record["stages"] != expected_revisions:
            violations.append(
                f"watcher {n} at revision {revision} held stage revisions {record['stages']}, "
                f"the database {expected_revisions}"
            )
    finals = [r for r in records if r["kind"] == "final"]
    if not finals:
        violations.append(f"watcher {n} wrote no final record")
    else:
        final = finals[-1]
        expected = {stage: _expected(f) for stage, f in history.at(history.head).items()}
        if final["revision"] != history.head or final["configs"] != expected:
            violations.append(
                f"watcher {n} ended at revision {final['revision']} holding {final['configs']}; "
                f"the database is at {history.head} holding {expected}"
            )
    return violations


# -- the run ---------------------------------------------------------------------------------


@contextlib.contextmanager
def _workdir(path: Path | None) -> Iterator[Path]:
    if path is not None:
        path.mkdir(parents=True, exist_ok=True)
        if any(path.iterdir()):
            # An earlier run's database and records would read as violations of this one.
            raise RuntimeError(f"--workdir {path} is not empty")
        yield path
        return
    with tempfile.TemporaryDirectory(prefix="stageconfig-chaos-") as temp:
        yield Path(temp)


def run_chaos(config: ChaosConfig, log: Callable[[str], None] = lambda _line: None) -> ChaosReport:
    """Run the whole scenario and return the report (violations included)."""
    if config.postgres:
        from tests.support.postgres import temporary_database

        async def on_postgres() -> ChaosReport:
            async with temporary_database() as url:
                return await asyncio.to_thread(_run, config, url, log)

        return asyncio.run(on_postgres())
    return _run(config, None, log)


def _run(config: ChaosConfig, database_url: str | None, log: Callable[[str], None]) -> ChaosReport:
    seed = config.seed if config.seed is not None else random.SystemRandom().randrange(2**32)
    rng = random.Random(seed)
    backend = f"postgresql, {config.replicas} replicas" if database_url else "sqlite"
    report = ChaosReport(backend=backend, seed=seed, watchers=config.watchers)
    started = time.monotonic()
    with _workdir(config.workdir) as workdir, FakeProviders() as fake:
        count = config.replicas if database_url else 1
        servers = Servers(workdir, fake, count, database_url)
        watchers = Watchers(workdir, config.watchers, servers.targets)
        try:
            servers.start()
            log(f"servers up at {', '.join(servers.targets)} ({backend}); seed {seed}")
            watchers.start()
            missing = watchers.wait(
                lambda n: any(r["kind"] == "ready" for r in watchers.records(n)), 60
            )
            if missing:
                raise RuntimeError(f"watchers {missing} never became READY")
            log(f"{config.watchers} watchers READY; updating and killing")
            # Kill points: acknowledged-update counts spread over the stream (a count may
            # repeat: two kills before the next acknowledgement).
            points = sorted(rng.randint(1, max(1, config.updates - 1)) for _ in range(config.kills))
            updater = Updater(servers.targets, config.updates, points, rng)
            killer = Killer(servers, updater, rng)
            threads = [
                threading.Thread(target=updater.run, name="chaos-updater", daemon=True),
                threading.Thread(target=killer.run, name="chaos-killer", daemon=True),
            ]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            for name, error in (("updater", updater.error), ("killer", killer.error)):
                if error is not None:
                    raise RuntimeError(f"the {name} failed: {error!r}") from error
            report.kills = killer.kills
            attempts = updater.attempts
            report.attempted = len(attempts)
            report.acknowledged = sum(a.outcome == "acknowledged" for a in attempts)
            report.unchanged = sum(a.outcome == "unchanged" for a in attempts)
            report.unknown = sum(a.outcome == "unknown" for a in attempts)
            report.rejected = sum(a.outcome == "rejected" for a in attempts)
            log(f"{report.acknowledged} updates acknowledged, {len(report.kills)} kills; checking")
            for kill in report.kills:
                if database_url is None and kill.integrity != "ok":
                    report.violations.append(
                        f"integrity_check after the kill at {kill.acknowledged_before} "
                        f"acknowledged updates: {kill.integrity}"
                    )
                if kill.lost:
                    report.violations.append(
                        f"after the kill at {kill.acknowledged_before} acknowledged updates the "
                        f"database file lacks acknowledged revisions {kill.lost}"
                    )
            history = read_history(servers.targets[0])
            report.head = history.head
            report.violations += check_attempts(history, attempts)
            committed = {e.comment for e in history.entries}
            report.unknown_committed = sum(
                a.outcome == "unknown" and a.id in committed for a in attempts
            )
            for target in servers.targets:
                head, configs = _wait_for_head(target, history.head, config.converge_seconds)
                expected = {s: _expected(f) for s, f in history.at(history.head).items()}
                if head != history.head:
                    report.violations.append(
                        f"server {target} stuck at revision {head} (head {history.head})"
                    )
                elif configs != expected:
                    report.violations.append(
                        f"server {target} serves {configs}, the history says {expected}"
                    )
            stuck = watchers.wait(
                lambda n: watchers.latest_revision(n) == history.head, config.converge_seconds
            )
            for n in stuck:
                report.violations.append(
                    f"watcher {n} did not reach the head {history.head} within "
                    f"{config.converge_seconds:g} s (at {watchers.latest_revision(n)})"
                )
            watchers.stop()
            for n in range(config.watchers):
                records = watchers.records(n)
                report.violations += check_watcher(n, records, history)
                report.watcher_changes += sum(r["kind"] == "change" for r in records)
                report.watcher_reconnects += watchers.reconnects(n)
            if database_url is None:
                servers.stop()
                integrity, lost = sqlite_checks(
                    servers.db_path, [a for a in attempts if a.outcome == "acknowledged"]
                )
                if integrity != "ok" or lost:
                    report.violations.append(
                        f"at the end: integrity_check {integrity}, lost revisions {lost}"
                    )
        except BaseException:
            log("server output:\n" + servers.logs()[-5000:])
            raise
        finally:
            watchers.stop()
            servers.stop()
    report.elapsed = time.monotonic() - started
    return report


def _wait_for_head(target: str, head: int, timeout: float) -> tuple[int, dict[str, list[Any]]]:
    deadline = time.monotonic() + timeout
    while True:
        seen, configs = read_configs(target)
        if seen >= head or time.monotonic() > deadline:
            return seen, configs
        time.sleep(0.05)


def main(argv: list[str] | None = None) -> int:
    """``scripts/chaos``: run, print the counts, exit 1 on any violation (2 if the run
    itself could not be carried out)."""
    parser = argparse.ArgumentParser(
        prog="scripts/chaos", description="Kill stageconfig servers under load and check "
        "that no acknowledged update is lost and no watcher sees anything uncommitted.",
    )  # fmt: skip
    parser.add_argument("--kills", type=int, default=3, help="SIGKILLs (default 3)")
    parser.add_argument("--updates", type=int, default=60, help="acknowledged updates (60)")
    parser.add_argument("--watchers", type=int, default=3, help="worker processes (3)")
    parser.add_argument("--postgres", action="store_true", help="replicas on PostgreSQL")
    parser.add_argument("--replicas", type=int, default=3, help="with --postgres (3)")
    parser.add_argument("--seed", type=int, help="repeat a run (its seed is printed)")
    parser.add_argument(
        "--workdir",
        type=Path,
        help="keep databases, logs and records here (an empty or new directory)",
    )
    args = parser.parse_args(argv)
    config = ChaosConfig(
        kills=args.kills,
        updates=args.updates,
        watchers=args.watchers,
        postgres=args.postgres,
        replicas=args.replicas,
        seed=args.seed,
        workdir=args.workdir,
    )

    def log(line: str) -> None:
        print(f"[{time.strftime('%H:%M:%S')}] {line}", file=sys.stderr, flush=True)

    try:
        report = run_chaos(config, log)
    except Exception as exc:
        print(f"chaos: the run could not be carried out: {exc!r}", file=sys.stderr)
        return 2
    print(report.summary())
    return 1 if report.violations else 0
