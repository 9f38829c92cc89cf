"""The rollouts table (issue 15): starting a rollout, ending it, reading it.

A rollout's start writes the candidate as a revision-log entry for the cohort only
(audience "canary") and a ``rollouts`` row holding it; the stage's ``provider_configs``
row stays the stable config. Its end is a compare-and-set on ``running_stage`` inside
the write transaction that takes the next revision, so of two replicas (or a judge and
an admin) ending the same rollout, exactly one writes; the other finds no running
rollout and writes nothing.

    promote  the candidate becomes the stage's row, at a new revision for everyone
    abort    the stable row moves to a new revision (same content), sent to the cohort

While a rollout runs, every other write of the stage is refused inside its transaction
(``refuse_during_rollout``), so a replica that has not heard of the rollout yet cannot
slip a change past it.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import replace
from typing import Any, cast

from sqlalchemy import Table, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from stageconfig_server.db.jobs import JobRuns
from stageconfig_server.db.keys import stored_with_keys
from stageconfig_server.db.models import ApiKeyRow, ProviderConfigRow, RevisionLogRow
from stageconfig_server.db.records import ConfigWrite, LogEntry, StoredConfig
from stageconfig_server.db.rollout_models import RolloutRow
from stageconfig_server.db.route_rows import route_key_ids
from stageconfig_server.db.rows import (
    LogRow,
    config_columns,
    config_from_columns,
    diff_configs,
    log_state,
    utc,
)
from stageconfig_server.domain import ChangeReason, HistoryEntry, StageType
from stageconfig_server.errors import RevisionConflict, RolloutConflict
from stageconfig_server.rollout_types import (
    Audience,
    RolloutEnd,
    RolloutPolicy,
    RolloutRecord,
    RolloutSpec,
    RolloutState,
    no_rollout_message,
    no_stable_message,
    running_message,
)

_rollouts = cast(Table, RolloutRow.__table__)
_configs = cast(Table, ProviderConfigRow.__table__)
_keys = cast(Table, ApiKeyRow.__table__)
_log = cast(Table, RevisionLogRow.__table__)


class RolloutRecords(JobRuns):
    """The rollout half of the repository (``db.repository.Repository`` inherits it and
    supplies the revision counter and the change announcement; the key rows are
    ``db.keys``')."""

    async def _next_revision(self, conn: AsyncConnection) -> int:
        raise NotImplementedError  # Repository's

    async def _announce(self, conn: AsyncConnection, revision: int) -> None:
        raise NotImplementedError  # Repository's

    async def refuse_during_rollout(self, conn: AsyncConnection, stage: StageType) -> None:
        """Raise RolloutConflict when a rollout of ``stage`` runs (inside a write)."""
        candidate = (
            await conn.execute(
                select(_rollouts.c.candidate_revision).where(
                    _rollouts.c.running_stage == stage.value
                )
            )
        ).scalar()
        if candidate is not None:
            raise RolloutConflict(running_message(stage, int(candidate)), int(candidate))

    async def running_rollouts(self) -> list[RolloutRecord]:
        """Every running rollout (at most one per stage)."""
        query = select(_rollouts).where(_rollouts.c.running_stage.is_not(None))
        async with self._read() as conn:
            return await _records(conn, (await conn.execute(query)).all())

    async def rollouts_by_id(self, ids: Collection[int]) -> dict[int, RolloutRecord]:
        """The rollouts of ``ids`` (running or ended), by id."""
        if not ids:
            return {}
        query = select(_rollouts).where(_rollouts.c.id.in_(list(ids)))
        async with self._read() as conn:
            records = await _records(conn, (await conn.execute(query)).all())
        return {r.id: r for r in records}

    async def start_rollout(
        self, write: ConfigWrite, expected_revision: int | None, spec: RolloutSpec
    ) -> tuple[RolloutRecord, LogEntry]:
        """Write the candidate at the next revision for the cohort only and record the
        running rollout. RolloutConflict when nothing is stored for the stage or a
        rollout runs; RevisionConflict when the stable config is not at
        ``expected_revision``. Nothing is written on either."""
        now, stage = self._clock(), write.stage_type
        try:
            async with self._write() as conn:
                revision = await self._next_revision(conn)
                current = await _stored(conn, stage)
                if current is None:
                    raise RolloutConflict(no_stable_message(stage))
                await self.refuse_during_rollout(conn, stage)
                if expected_revision is not None and expected_revision != current.revision:
                    raise RevisionConflict(
                        f"stage {stage.value} is at revision {current.revision}, "
                        f"not {expected_revision}: reload and retry",
                        current.revision,
                    )
                # The candidate's routes: the ones it sets, else the stable's; their new
                # keys are added to api_keys like any write's.
                stored = await stored_with_keys(conn, write, current, revision, now)
                values: dict[str, Any] = {
                    "stage_type": stage.value,
                    "running_stage": stage.value,
                    "state": RolloutState.RUNNING.value,
                    "stable_revision": current.revision,
                    "candidate_revision": revision,
                    "end_revision": None,
                    "percent": spec.percent,
                    "client_ids": list(spec.client_ids),
                    "policy": _policy_json(spec.policy),
                    "candidate": _candidate_json(stored),
                    "started_at": now,
                    "started_by": write.actor,
                    "ended_by": "",
                    "decision": "",
                    "comment": write.comment,
                }
                rollout_id = int(
                    (
                        await conn.execute(
                            insert(_rollouts).values(**values).returning(_rollouts.c.id)
                        )
                    ).scalar_one()
                )
                change = HistoryEntry(
                    revision=revision,
                    stage_type=stage,
                    actor=write.actor,
                    reason=ChangeReason.ROLLOUT_STARTED,
                    diff=diff_configs(current, stored),
                    comment=write.comment,
                    created_at=now,
                )
                row = LogRow(change, stored, None, Audience.CANARY.value, rollout_id)
                await conn.execute(insert(_log).values(**row.columns()))
                await self._announce(conn, revision)
        except IntegrityError as exc:  # a concurrent start won the unique running_stage
            raise RolloutConflict(f"a rollout of stage {stage.value} already runs") from exc
        record = _record({**values, "id": rollout_id}, stored)
        return record, LogEntry(change, stored, Audience.CANARY.value, rollout_id)

    async def end_rollout(self, end: RolloutEnd) -> tuple[RolloutRecord, LogEntry]:
        """Promote or abort the stage's running rollout at the next revision (see the
        module docstring). RolloutConflict when none runs (or another writer ended it
        first), RevisionConflict when its candidate is not ``end.expected_candidate``."""
        now, stage, outcome = self._clock(), end.stage_type, end.outcome
        expected = end.expected_candidate
        async with self._write() as conn:
            revision = await self._next_revision(conn)
            row = (
                await conn.execute(
                    select(_rollouts).where(_rollouts.c.running_stage == stage.value)
                )
            ).first()
            if row is None:
                raise RolloutConflict(no_rollout_message(stage))
            if expected is not None and expected != row.candidate_revision:
                raise RevisionConflict(
                    f"the rollout of stage {stage.value} has its candidate at revision "
                    f"{row.candidate_revision}, not {expected}: reload and retry",
                    row.candidate_revision,
                )
            ended = await conn.execute(
                update(_rollouts)
                .where(_rollouts.c.id == row.id, _rollouts.c.running_stage == stage.value)
                .values(
                    running_stage=None,
                    state=outcome.value,
                    end_revision=revision,
                    ended_at=now,
                    ended_by=end.actor,
                    decision=end.decision,
                )
            )
            if not ended.rowcount:
                raise RolloutConflict(no_rollout_message(stage))
            stable = await _stored(conn, stage)
            candidate = (await _candidates(conn, [row]))[row.id]
            if stable is None:  # the row exists while a rollout runs; defensive
                raise RolloutConflict(no_stable_message(stage))
            promoted = outcome is RolloutState.PROMOTED
            before, after = (stable, candidate) if promoted else (candidate, stable)
            stored = replace(after, revision=revision, updated_at=now)
            await conn.execute(
                update(_configs)
                .where(_configs.c.stage_type == stage.value)
                .values(**config_columns(stored))
            )
            change = HistoryEntry(
                revision=revision,
                stage_type=stage,
                actor=end.actor,
                reason=ChangeReason.ROLLOUT_PROMOTED if promoted else ChangeReason.ROLLOUT_ABORTED,
                diff=diff_configs(before, stored),
                comment=end.comment,
                created_at=now,
            )
            audience = (Audience.ALL if promoted else Audience.CANARY).value
            await conn.execute(
                insert(_log).values(**LogRow(change, stored, None, audience, row.id).columns())
            )
            await self._announce(conn, revision)
        record = replace(
            _record(row._mapping, candidate),
            state=outcome,
            end_revision=revision,
            ended_at=now,
            ended_by=end.actor,
            decision=end.decision,
        )
        return record, LogEntry(change, stored, audience, row.id)


async def _stored(conn: AsyncConnection, stage: StageType) -> StoredConfig | None:
    row = (await conn.execute(select(_configs).where(_configs.c.stage_type == stage.value))).first()
    return config_from_columns(stage, row._mapping) if row else None


async def _candidates(conn: AsyncConnection, rows: Collection[Any]) -> dict[int, StoredConfig]:
    """Each row's candidate, with its keys' ciphertexts (primary and routes) as stored
    now."""
    key_ids: set[int] = set()
    for r in rows:
        key_ids |= {r.candidate.get("api_key_id")} - {None}
        key_ids |= route_key_ids(r.candidate.get("fallbacks"))
    ciphertexts: dict[int, str] = {}
    if key_ids:
        keys = await conn.execute(
            select(_keys.c.id, _keys.c.api_key_encrypted).where(_keys.c.id.in_(key_ids))
        )
        ciphertexts = {k.id: k.api_key_encrypted for k in keys}
    return {
        r.id: config_from_columns(
            StageType(r.stage_type),
            {
                **r.candidate,
                "revision": r.candidate_revision,
                "api_key_encrypted": ciphertexts.get(r.candidate.get("api_key_id"))
                or r.candidate.get("api_key_encrypted", ""),
            },
            ciphertexts,
        )
        for r in rows
    }


async def _records(conn: AsyncConnection, rows: Collection[Any]) -> list[RolloutRecord]:
    candidates = await _candidates(conn, rows)
    return [_record(r._mapping, candidates[r.id]) for r in rows]


def _candidate_json(stored: StoredConfig) -> dict[str, Any]:
    """The candidate as a revision-log state; a key without an ``api_keys`` row (rows
    older than that table) keeps its ciphertext here, so a promote can store it. Its
    routes' keys are referenced by ``api_keys`` id only (never a ciphertext here, let
    alone a plaintext), but keep their model lists, which a promote stores."""
    state = log_state(stored)
    state["fallbacks"] = [
        {**route, "models_cache": list(full.models_cache)}
        for route, full in zip(state["fallbacks"], stored.fallbacks, strict=True)
    ]
    if stored.api_key_id is None:
        state["api_key_encrypted"] = stored.api_key_encrypted
    return state


def _policy_json(policy: RolloutPolicy | None) -> dict[str, Any] | None:
    if policy is None:
        return None
    return {
        "bake_seconds": policy.bake_seconds,
        "min_tasks": policy.min_tasks,
        "max_failure_rate_increase": policy.max_failure_rate_increase,
    }


def _record(values: Mapping[Any, Any], candidate: StoredConfig) -> RolloutRecord:
    policy = values.get("policy")
    return RolloutRecord(
        id=int(values["id"]),
        stage_type=StageType(values["stage_type"]),
        state=RolloutState(values["state"]),
        stable_revision=int(values["stable_revision"]),
        candidate_revision=int(values["candidate_revision"]),
        end_revision=values.get("end_revision"),
        percent=int(values["percent"]),
        client_ids=tuple(values.get("client_ids") or ()),
        policy=RolloutPolicy(
            int(policy["bake_seconds"]),
            int(policy["min_tasks"]),
            float(policy["max_failure_rate_increase"]),
        )
        if policy
        else None,
        candidate=candidate,
        started_at=utc(values["started_at"]) or candidate.updated_at,
        started_by=values.get("started_by") or "",
        ended_at=utc(values.get("ended_at")),
        ended_by=values.get("ended_by") or "",
        decision=values.get("decision") or "",
        comment=values.get("comment") or "",
    )
