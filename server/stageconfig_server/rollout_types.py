"""Safe rollouts (issue 15), the vocabulary: a rollout's spec and policy, its cohort, its
stored record and what each side of it did. Pure data and pure functions: no storage,
no gRPC, no clock.

Cohort membership is a pure function of (stage, client_id) and the rollout's spec, so
every replica, every restart and every reconnect puts a worker on the same side: a
percentage cohort hashes ``"<stage>/<client_id>"`` with SHA-256 into 0..99 and takes
the clients below ``percent``; an explicit cohort is its list of client ids.
"""

from __future__ import annotations

import enum
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from stageconfig_server.db.records import StoredConfig
from stageconfig_server.domain import StageConfig, StageType
from stageconfig_server.errors import InvalidArgument, RolloutConflict

ROLLOUT_ACTOR = "stageconfig-rollout"
"""The actor history records for the automatic policy's decisions."""
MAX_COHORT_CLIENT_IDS = 1000
MAX_CLIENT_ID_LENGTH = 128
MAX_BAKE_SECONDS = 86_400


class Audience(enum.StrEnum):
    """Who receives a revision (``revision_log.audience``)."""

    ALL = "all"
    CANARY = "canary"
    """Only the rollout's cohort (a rollout's start, and its abort)."""
    STABLE = "stable"
    """Everyone outside the cohort (reserved: no revision is written for them alone)."""


class RolloutState(enum.StrEnum):
    """Where a rollout stands."""

    RUNNING = "RUNNING"
    PROMOTED = "PROMOTED"
    ABORTED = "ABORTED"


@dataclass(frozen=True, slots=True)
class RolloutPolicy:
    """When the judge decides: after ``bake_seconds`` and ``min_tasks`` canary tasks,
    promote when canary failure rate − stable failure rate ≤ the increase, else abort."""

    bake_seconds: int
    min_tasks: int
    max_failure_rate_increase: float


@dataclass(frozen=True, slots=True)
class RolloutSpec:
    """The cohort of a new rollout (``percent`` or ``client_ids``) and its policy."""

    percent: int = 0
    client_ids: tuple[str, ...] = ()
    policy: RolloutPolicy | None = None


def in_percent(stage: StageType, client_id: str, percent: int) -> bool:
    """Whether ``client_id`` falls in the first ``percent`` of the stage's hash space."""
    digest = hashlib.sha256(f"{stage.value}/{client_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % 100 < percent


@dataclass(frozen=True, slots=True)
class Cohort:
    """The clients of one rollout's canary side."""

    stage_type: StageType
    percent: int
    client_ids: frozenset[str]

    def contains(self, client_id: str) -> bool:
        """Whether ``client_id`` is on the canary side (an empty id never is)."""
        if not client_id:
            return False
        if self.client_ids:
            return client_id in self.client_ids
        return in_percent(self.stage_type, client_id, self.percent)


@dataclass(frozen=True, slots=True)
class RolloutEnd:
    """How the running rollout of a stage is to end: promoted or aborted, by whom, why
    (``decision``: for the policy, the figures), and optionally only if its candidate
    is at ``expected_candidate``."""

    stage_type: StageType
    outcome: RolloutState
    actor: str
    decision: str = ""
    comment: str = ""
    expected_candidate: int | None = None


@dataclass(frozen=True, slots=True)
class RolloutRecord:
    """A ``rollouts`` row; ``candidate`` has its key's ciphertext put back."""

    id: int
    stage_type: StageType
    state: RolloutState
    stable_revision: int
    candidate_revision: int
    end_revision: int | None
    percent: int
    client_ids: tuple[str, ...]
    policy: RolloutPolicy | None
    candidate: StoredConfig
    started_at: datetime
    started_by: str
    ended_at: datetime | None = None
    ended_by: str = ""
    decision: str = ""
    comment: str = ""

    @property
    def cohort(self) -> Cohort:
        """Who is on the canary side."""
        return Cohort(self.stage_type, self.percent, frozenset(self.client_ids))


@dataclass(frozen=True, slots=True)
class Side:
    """One side of a rollout as the fleet reports it since the rollout started."""

    revision: int
    clients: int = 0
    succeeded: int = 0
    failed: int = 0

    @property
    def tasks(self) -> int:
        """Finished tasks (succeeded + failed)."""
        return self.succeeded + self.failed

    @property
    def failure_rate(self) -> float:
        """failed / finished; 0 without finished tasks."""
        return self.failed / self.tasks if self.tasks else 0.0


@dataclass(frozen=True, slots=True)
class RolloutView:
    """A rollout as admins see it: the record, its candidate (plaintext key: the
    transport masks it) and both sides' figures."""

    record: RolloutRecord
    candidate: StageConfig
    canary: Side
    stable: Side


def running_message(stage: StageType, candidate_revision: int) -> str:
    """Why a change of a stage under rollout is refused."""
    return (
        f"stage {stage.value} has a rollout running (candidate revision "
        f"{candidate_revision}): promote it (PromoteRollout) or abort it (AbortRollout) first"
    )


def no_rollout_message(stage: StageType) -> str:
    """Why a promote or abort without a running rollout is refused."""
    return f"no rollout of stage {stage.value} is running"


def no_stable_message(stage: StageType) -> str:
    """Why a rollout of a stage with nothing stored is refused."""
    return (
        f"stage {stage.value} has no stored config: a rollout needs a stable config to "
        "compare with; store one with UpdateConfig first"
    )


def admit_change(
    stage: StageType,
    running: RolloutRecord | None,
    has_stable: bool,
    spec: RolloutSpec | None,
) -> None:
    """Refuse a change of ``stage`` while ``running`` runs (RolloutConflict), a bad
    ``spec`` (InvalidArgument) and a rollout with no stable config to compare with."""
    if spec is not None:
        check_spec(spec)
    if running is not None:
        raise RolloutConflict(
            running_message(stage, running.candidate_revision), running.candidate_revision
        )
    if spec is not None and not has_stable:
        raise RolloutConflict(no_stable_message(stage))


def check_spec(spec: RolloutSpec) -> RolloutSpec:
    """The spec, checked: exactly one of percent (1-99) and client_ids (at most 1000
    distinct, non-empty, printable, ≤128 characters); a policy's bake_seconds 1-86400,
    min_tasks ≥ 1, max_failure_rate_increase 0-1. InvalidArgument names the field."""
    if spec.percent and spec.client_ids:
        raise InvalidArgument("rollout.percent", "set either percent or client_ids, not both")
    if not spec.percent and not spec.client_ids:
        raise InvalidArgument("rollout.percent", "is required (1-99) unless client_ids is set")
    if spec.percent and not 1 <= spec.percent <= 99:
        raise InvalidArgument("rollout.percent", "must be between 1 and 99")
    _check_client_ids(spec.client_ids)
    if spec.policy is not None:
        policy = spec.policy
        if not 1 <= policy.bake_seconds <= MAX_BAKE_SECONDS:
            raise InvalidArgument(
                "rollout.policy.bake_seconds", f"must be between 1 and {MAX_BAKE_SECONDS}"
            )
        if policy.min_tasks < 1:
            raise InvalidArgument("rollout.policy.min_tasks", "must be at least 1")
        increase = policy.max_failure_rate_increase
        if not 0.0 <= increase <= 1.0:  # also refuses NaN
            raise InvalidArgument(
                "rollout.policy.max_failure_rate_increase", "must be between 0 and 1"
            )
    return spec


def _check_client_ids(client_ids: Sequence[str]) -> None:
    if len(client_ids) > MAX_COHORT_CLIENT_IDS:
        raise InvalidArgument("rollout.client_ids", f"at most {MAX_COHORT_CLIENT_IDS} ids")
    seen: set[str] = set()
    for index, client_id in enumerate(client_ids):
        field = f"rollout.client_ids[{index}]"
        if not client_id:
            raise InvalidArgument(field, "must not be empty")
        if len(client_id) > MAX_CLIENT_ID_LENGTH or not client_id.isprintable():
            raise InvalidArgument(
                field, f"must be at most {MAX_CLIENT_ID_LENGTH} printable characters"
            )
        if client_id in seen:
            raise InvalidArgument(field, f"repeats {client_id!r}")
        seen.add(client_id)
