"""Rollouts as the admin tools see them: the typed views (``Rollout``, ``RolloutSide``,
``RolloutPolicy``, ``RolloutState``), their conversion from the proto, and the calls that
start, promote and abort one (``RolloutCalls``, mixed into ``AdminClient``).

A rollout sends a stage's new config (the *candidate*) to a cohort of clients first —
a share of them by a stable hash of client id and stage, or an explicit list — while
everyone else keeps the *stable* config. It ends by a promote (the candidate becomes the
config of everyone) or an abort (the cohort goes back to the stable config), made by an
admin or, with a ``RolloutPolicy``, by the server judging the cohort's task outcomes.
The candidate's key is masked like every key an admin tool returns.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from stageconfig._admin_routes import RouteSpec
from stageconfig._convert import provider_to_pb, stage_from_pb, stage_to_pb, time_from_pb
from stageconfig._types import ProtoEnum, ProviderKind, StageConfig, StageType
from stageconfig_contract.v1 import stage_config_pb2 as pb


class RolloutState(ProtoEnum):
    """Where a rollout stands (UNSPECIFIED: a state this client does not know)."""

    RUNNING = "RUNNING", pb.ROLLOUT_STATE_RUNNING
    """The cohort runs the candidate; the rest keep the stable config."""
    PROMOTED = "PROMOTED", pb.ROLLOUT_STATE_PROMOTED
    """The candidate became the config of everyone."""
    ABORTED = "ABORTED", pb.ROLLOUT_STATE_ABORTED
    """The cohort went back to the stable config."""
    UNSPECIFIED = "UNSPECIFIED", pb.ROLLOUT_STATE_UNSPECIFIED


@dataclass(frozen=True, slots=True)
class RolloutPolicy:
    """How the server judges a rollout by itself: no earlier than ``bake_seconds`` after
    the start and once the cohort finished ``min_tasks`` tasks, it promotes when the
    cohort's failure rate exceeds the stable side's by at most
    ``max_failure_rate_increase`` (0-1), and aborts otherwise."""

    bake_seconds: int
    min_tasks: int
    max_failure_rate_increase: float


@dataclass(frozen=True, slots=True)
class RolloutSide:
    """One side of a rollout (the cohort or the rest) as the fleet reports it."""

    revision: int
    """The revision this side runs."""
    clients: int
    """Clients on this side (connected watchers and reporting clients)."""
    succeeded: int
    failed: int
    failure_rate: float
    """``failed / (succeeded + failed)``; 0 when no task finished."""

    @property
    def finished(self) -> int:
        """Tasks that succeeded or failed."""
        return self.succeeded + self.failed


@dataclass(frozen=True, slots=True)
class Rollout:
    """A stage's rollout: running, or how it ended (the answer of a promote or abort)."""

    stage_type: StageType
    state: RolloutState
    candidate: StageConfig | None
    """The candidate config, key masked (None when the server sent none, or one with a
    provider kind this client does not know)."""
    candidate_revision: int
    """The revision the candidate was written at."""
    stable_revision: int
    """The stable config's revision when the rollout started."""
    percent: int
    """The cohort as a share of clients (1-99); 0 when ``client_ids`` names it."""
    client_ids: tuple[str, ...]
    """The cohort as an explicit list of client ids (empty with ``percent``)."""
    policy: RolloutPolicy | None
    """None: the rollout waits for an admin's promote or abort."""
    started_at: datetime | None
    started_by: str
    canary: RolloutSide
    """The cohort, on the candidate."""
    stable: RolloutSide
    """Everyone else, on the stable config."""
    ended_at: datetime | None = None
    ended_by: str = ""
    decision: str = ""
    """Why it ended (for an automatic decision, the figures it used)."""
    end_revision: int = 0
    """The revision written by the promote or abort (0 while running)."""

    @property
    def running(self) -> bool:
        """Whether the rollout still runs."""
        return self.state is RolloutState.RUNNING

    @property
    def cohort(self) -> str:
        """The cohort in words: ``25 % of clients`` or ``2 clients: a, b``."""
        if self.percent:
            return f"{self.percent} % of clients"
        count = len(self.client_ids)
        noun = "client" if count == 1 else "clients"
        return f"{count} {noun}: {', '.join(self.client_ids)}"


@dataclass(frozen=True, slots=True)
class RolloutResult:
    """What a promote or an abort wrote."""

    config: StageConfig
    """After a promote the config everyone now has; after an abort the stable config
    the cohort went back to (key masked)."""
    rollout: Rollout | None
    """The rollout as it ended."""


def policy_from_pb(message: pb.RolloutPolicy) -> RolloutPolicy:
    """A policy message as a ``RolloutPolicy``."""
    return RolloutPolicy(
        bake_seconds=message.bake_seconds,
        min_tasks=message.min_tasks,
        max_failure_rate_increase=message.max_failure_rate_increase,
    )


def side_from_pb(message: pb.RolloutSide) -> RolloutSide:
    """One side of a rollout."""
    return RolloutSide(
        revision=message.revision,
        clients=message.clients,
        succeeded=message.succeeded,
        failed=message.failed,
        failure_rate=message.failure_rate,
    )


def rollout_from_pb(
    message: pb.Rollout, present: bool, masked: Callable[[pb.StageConfig], StageConfig]
) -> Rollout | None:
    """The rollout of a message field (None when the field is unset, or its stage is one
    this client does not know); ``masked`` converts the candidate with its key masked."""
    stage = stage_from_pb(message.stage_type)
    if not present or stage is None:
        return None
    try:
        candidate: StageConfig | None = (
            masked(message.candidate) if message.HasField("candidate") else None
        )
    except ValueError:  # UnrepresentableConfig: a provider kind newer than this client
        candidate = None
    state = RolloutState.from_number(message.state) or RolloutState.UNSPECIFIED
    return Rollout(
        stage_type=stage,
        state=state,
        candidate=candidate,
        candidate_revision=message.candidate_revision,
        stable_revision=message.stable_revision,
        percent=message.percent,
        client_ids=tuple(message.client_ids),
        policy=policy_from_pb(message.policy) if message.HasField("policy") else None,
        started_at=time_from_pb(message.started_at, message.HasField("started_at")),
        started_by=message.started_by,
        canary=side_from_pb(message.canary),
        stable=side_from_pb(message.stable),
        ended_at=time_from_pb(message.ended_at, message.HasField("ended_at")),
        ended_by=message.ended_by,
        decision=message.decision,
        end_revision=message.end_revision,
    )


def rollout_spec(
    percent: int | None,
    client_ids: Sequence[str] | None,
    policy: RolloutPolicy | None,
) -> pb.RolloutSpec:
    """The RolloutSpec of a start: exactly one of ``percent`` and ``client_ids``
    (ValueError otherwise, before any call; the server checks the values)."""
    if (percent is None) == (not client_ids):
        raise ValueError("a rollout needs exactly one of percent and client_ids")
    spec = pb.RolloutSpec(percent=percent or 0, client_ids=list(client_ids or ()))
    if policy is not None:
        spec.policy.CopyFrom(
            pb.RolloutPolicy(
                bake_seconds=policy.bake_seconds,
                min_tasks=policy.min_tasks,
                max_failure_rate_increase=policy.max_failure_rate_increase,
            )
        )
    return spec


def policy_of(
    bake_seconds: int | None, min_tasks: int | None, max_failure_rate_increase: float | None
) -> RolloutPolicy | None:
    """The automatic policy from its three settings: all three, or none (ValueError
    naming the missing ones otherwise)."""
    given = {
        "bake_seconds": bake_seconds,
        "min_tasks": min_tasks,
        "max_failure_rate_increase": max_failure_rate_increase,
    }
    missing = [name for name, value in given.items() if value is None]
    if len(missing) == len(given):
        return None
    if missing:
        raise ValueError(f"an automatic rollout policy also needs {', '.join(missing)}")
    return RolloutPolicy(
        int(bake_seconds or 0), int(min_tasks or 0), max_failure_rate_increase or 0.0
    )


def update_request(
    stage: StageType | str,
    provider: ProviderKind | str,
    *,
    api_key: str | None,
    model: str | None,
    options: Mapping[str, str] | None,
    expected_revision: int | None,
    comment: str,
    fallbacks: Sequence[RouteSpec] | None,
    clear_fallbacks: bool,
    **more: Any,
) -> pb.UpdateConfigRequest:
    """The UpdateConfig request of ``update_config`` and ``start_rollout`` (``more``:
    their own fields, e.g. ``rollout`` or ``validate_only``); the optional fields are set
    only when given, so the server can tell "keep" from "set to empty"."""
    request = pb.UpdateConfigRequest(
        stage_type=stage_to_pb(stage),
        provider_kind=provider_to_pb(provider),
        options=dict(options or {}),
        comment=comment,
        fallbacks=[route.to_pb() for route in fallbacks or ()],
        clear_fallbacks=clear_fallbacks,
        **more,
    )
    if api_key is not None:
        request.api_key = api_key
    if model is not None:
        request.model = model
    if expected_revision is not None:
        request.expected_revision = expected_revision
    return request


class RolloutCalls:
    """The rollout calls of ``AdminClient`` (a mixin: it provides ``_call``, ``_stub``,
    ``list_configs`` and the conversions)."""

    _stub: Any
    _call: Callable[[Callable[..., Any], Any], Any]
    _masked: Callable[[pb.StageConfig], StageConfig]
    _current_provider: Callable[[StageType | str], ProviderKind]

    def start_rollout(
        self,
        stage: StageType | str,
        provider: ProviderKind | str | None = None,
        *,
        api_key: str | None = None,
        model: str | None = None,
        options: Mapping[str, str] | None = None,
        percent: int | None = None,
        client_ids: Sequence[str] | None = None,
        bake_seconds: int | None = None,
        min_tasks: int | None = None,
        max_failure_rate_increase: float | None = None,
        expected_revision: int | None = None,
        comment: str = "",
        fallbacks: Sequence[RouteSpec] | None = None,
        clear_fallbacks: bool = False,
    ) -> Rollout:
        """Write a candidate config for a cohort only: ``percent`` of the clients (by a
        stable hash of client id and stage) or the ``client_ids`` — exactly one of them.

        ``provider`` None keeps the stored provider; ``api_key``, ``model`` and
        ``options`` work as in ``update_config`` (verified with the provider first), and
        so do ``fallbacks`` and ``clear_fallbacks``: the candidate's own fallback routes
        (None keeps the stable config's routes for the candidate).
        ``bake_seconds``, ``min_tasks`` and ``max_failure_rate_increase`` (all three or
        none) let the server promote or abort by itself; without them the rollout waits
        for ``promote_rollout`` or ``abort_rollout``. Raises InvalidArgumentError
        (``.field``, e.g. ``rollout.percent``), RolloutStateError (a rollout already runs),
        KeyRejectedError (the key was refused), ConflictError (stale
        ``expected_revision``).
        """
        policy = policy_of(bake_seconds, min_tasks, max_failure_rate_increase)
        spec = rollout_spec(percent, client_ids, policy)
        chosen = provider if provider is not None else self._current_provider(stage)
        request = update_request(
            stage,
            chosen,
            api_key=api_key,
            model=model,
            options=options,
            expected_revision=expected_revision,
            comment=comment,
            fallbacks=fallbacks,
            clear_fallbacks=clear_fallbacks,
            rollout=spec,
        )
        answer = self._call(self._stub.UpdateConfig, request)
        rollout = rollout_from_pb(answer.rollout, answer.HasField("rollout"), self._masked)
        if rollout is None:
            # An older server ignores the unknown field and writes for everyone.
            raise RuntimeError(
                "the server wrote the config without a rollout: it does not know rollouts "
                f"(revision {answer.config.revision} now applies to every client)"
            )
        return rollout

    def promote_rollout(
        self, stage: StageType | str, *, expected_revision: int | None = None, comment: str = ""
    ) -> RolloutResult:
        """Make the running rollout's candidate the config of every client (one new
        revision). ``expected_revision``: the candidate's revision, else ConflictError.
        Raises RolloutStateError (FAILED_PRECONDITION) when no rollout runs."""
        request = pb.PromoteRolloutRequest(stage_type=stage_to_pb(stage), comment=comment)
        if expected_revision is not None:
            request.expected_revision = expected_revision
        return self._result(self._call(self._stub.PromoteRollout, request))

    def abort_rollout(
        self, stage: StageType | str, *, expected_revision: int | None = None, comment: str = ""
    ) -> RolloutResult:
        """Send the running rollout's cohort back to the stable config (one new revision
        only the cohort receives). Same errors as ``promote_rollout``."""
        request = pb.AbortRolloutRequest(stage_type=stage_to_pb(stage), comment=comment)
        if expected_revision is not None:
            request.expected_revision = expected_revision
        return self._result(self._call(self._stub.AbortRollout, request))

    def _result(self, answer: Any) -> RolloutResult:
        rollout = rollout_from_pb(answer.rollout, answer.HasField("rollout"), self._masked)
        return RolloutResult(config=self._masked(answer.config), rollout=rollout)
