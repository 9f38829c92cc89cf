"""Rollouts on the providers page: the stage form's "roll out to a cohort first" inputs
(``posted_rollout``: a share of clients or a list of client ids, and optionally the
automatic policy), the text of a running rollout's section, and the handlers of its
Promote and Abort buttons.

Promote and Abort are conditional like a save: the form carries the candidate's
revision when the page was loaded, so a rollout that ended meanwhile (the server's
policy judged it, or another admin) is not ended twice — the page says what happened.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import Response

from stageconfig import ConflictError, RPCError, StageType
from stageconfig.admin import Rollout, RolloutResult
from stageconfig.errors import RolloutStateError
from stageconfig_web.forms import posted_stage
from stageconfig_web.pages import AdminWeb, LoggedOut
from stageconfig_web.sessions import Flash

ROLLOUT_INPUTS = (
    "rollout_percent",
    "rollout_client_ids",
    "bake_seconds",
    "min_tasks",
    "max_failure_rate_increase",
)
"""The stage form's rollout inputs (all empty: a plain save)."""

_POLICY_INPUTS = ROLLOUT_INPUTS[2:]


class RolloutFormError(ValueError):
    """The rollout inputs of a stage form do not make a rollout (shown in the section)."""


@dataclass(frozen=True, slots=True)
class PostedRollout:
    """What a stage form's rollout inputs ask for."""

    percent: int | None
    client_ids: tuple[str, ...]
    bake_seconds: int | None
    min_tasks: int | None
    max_failure_rate_increase: float | None


def rollout_inputs(form: FormData) -> dict[str, str]:
    """The rollout inputs as typed (to show them again after an error)."""
    values = {name: form.get(name) for name in ROLLOUT_INPUTS}
    return {name: value.strip() for name, value in values.items() if isinstance(value, str)}


def posted_rollout(inputs: dict[str, str]) -> PostedRollout | None:
    """The rollout the inputs ask for; None when they ask for none (a plain save).
    Raises RolloutFormError for inputs that cannot be sent."""
    if not any(inputs.get(name) for name in ROLLOUT_INPUTS):
        return None
    percent_text = inputs.get("rollout_percent", "")
    client_ids = tuple(c for c in re.split(r"[\s,]+", inputs.get("rollout_client_ids", "")) if c)
    if bool(percent_text) == bool(client_ids):
        raise RolloutFormError(
            "A rollout goes to a share of the clients or to a list of client ids: fill in "
            "exactly one of them."
        )
    policy = [inputs.get(name, "") for name in _POLICY_INPUTS]
    if any(policy) and not all(policy):
        raise RolloutFormError(
            "The automatic policy needs all three of bake time, minimum tasks and maximum "
            "failure-rate increase (or none of them: you promote or abort yourself)."
        )
    try:
        return PostedRollout(
            percent=int(percent_text) if percent_text else None,
            client_ids=client_ids,
            bake_seconds=int(policy[0]) if policy[0] else None,
            min_tasks=int(policy[1]) if policy[1] else None,
            max_failure_rate_increase=float(policy[2]) if policy[2] else None,
        )
    except ValueError:
        raise RolloutFormError(
            "Share, bake time and minimum tasks are whole numbers; the maximum failure-rate "
            "increase is a number between 0 and 1."
        ) from None


def started_text(rollout: Rollout) -> str:
    """The notice after a rollout started."""
    candidate = rollout.candidate
    what = f"{candidate.provider_kind.value} {candidate.model}" if candidate else "the candidate"
    how = (
        "the server promotes or aborts it by itself"
        if rollout.policy
        else "promote or abort it when you are satisfied"
    )
    return (
        f"Rollout started: revision {rollout.candidate_revision} ({what}) for "
        f"{rollout.cohort}; everyone else keeps revision {rollout.stable_revision}. Then {how}."
    )


def _ended_text(verb: str, result: RolloutResult) -> str:
    config = result.config
    return (
        f"{verb}: revision {config.revision}, {config.provider_kind.value} {config.model}, "
        f"status {config.status.value}."
    )


def _int(value: object) -> int | None:
    try:
        return int(value) if isinstance(value, str) else None
    except ValueError:
        return None


class RolloutPages:
    """POST /admin/providers/rollout/promote and /admin/providers/rollout/abort."""

    def __init__(self, web: AdminWeb) -> None:
        self.web = web

    async def promote(self, request: Request) -> Response:
        """Promote the stage's running rollout (the candidate for everyone)."""
        return await self._end(request, promote=True)

    async def abort(self, request: Request) -> Response:
        """Abort the stage's running rollout (the cohort back on the stable config)."""
        return await self._end(request, promote=False)

    async def _end(self, request: Request, *, promote: bool) -> Response:
        posted = await self.web.posted_logged_in(request)
        if isinstance(posted, Response):
            return posted
        session, client, form = posted
        stage = posted_stage(form.get("stage_type"))
        expected = _int(form.get("expected_revision"))
        if stage is None or expected is None:
            return Response("malformed form", status_code=400, media_type="text/plain")
        call = client.promote_rollout if promote else client.abort_rollout
        verb = "Promoted" if promote else "Aborted"
        try:
            result = await self.web.call(session, call, stage, expected_revision=expected)
        except LoggedOut as out:
            return self.web.login_again(str(out))
        except (ConflictError, RolloutStateError) as error:
            # ABORTED: another candidate runs now; FAILED_PRECONDITION: none runs any more.
            message = (
                f"Not {verb.lower()}: the rollout of {stage.value} you saw (candidate revision "
                f"{expected}) is no longer the one running — it may have ended by its policy "
                f"or by another admin. The page shows the current state. ({error.message})"
            )
            session.flashes.append(Flash(stage.value, message, "error"))
        except RPCError as error:
            session.flashes.append(
                Flash(stage.value, f"Not {verb.lower()}: {error.message}", "error")
            )
        else:
            session.flashes.append(Flash(stage.value, _ended_text(verb, result)))
        return self.web.redirect(stage_url(stage))


def stage_url(stage: StageType) -> str:
    """Where a stage's section of the providers page is."""
    return f"/admin/providers#stage-{stage.value}"
