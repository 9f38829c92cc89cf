"""The providers page: the four stages with one form each, and the handlers of its
Save (UpdateConfig with the form's expected revision) and Refresh models buttons.

Every call goes through the session's ``AdminClient``, holding the token the person
logged in with, so the revision log names them. A refused save shows the section again
with the message next to its field; a stale form shows the conflict and the current
state instead of overwriting it.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from stageconfig import (
    ConflictError,
    InvalidArgumentError,
    KeyRejectedError,
    NotFoundError,
    RPCError,
    UnavailableError,
)
from stageconfig.admin import Rollout, UpdateResult
from stageconfig.errors import RolloutStateError
from stageconfig_web.display import provider_label
from stageconfig_web.forms import (
    PostedUpdate,
    StageForm,
    field_message,
    form_field,
    form_for,
    posted_stage,
    posted_update,
)
from stageconfig_web.pages import AdminWeb, LoggedOut
from stageconfig_web.rollouts import (
    PostedRollout,
    RolloutFormError,
    posted_rollout,
    rollout_inputs,
    started_text,
)
from stageconfig_web.sessions import Flash, Session


def _saved(result: UpdateResult) -> str:
    config = result.config
    # The enum name, as the server's own messages (shown in the same place) and
    # stageconfigctl name providers.
    if not result.written:  # identical to the stored config: the server wrote nothing
        return f"Nothing to save: identical to revision {config.revision}."
    text = f"Saved: revision {config.revision}, {config.provider_kind.value} {config.model}, "
    text += f"status {config.status.value}."
    return f"{text} {config.status_reason}" if config.status_reason else text


class ProviderPages:
    """GET /admin/providers, POST /admin/providers/update and /admin/providers/refresh."""

    def __init__(self, web: AdminWeb) -> None:
        self.web = web

    async def _page(
        self,
        request: Request,
        session: Session,
        *,
        override: StageForm | None = None,
        status: int = 200,
        fresh_stage: str = "",
    ) -> Response:
        """The providers page; ``override`` replaces its stage's section (a form with
        errors), ``fresh_stage`` shows that stage's server state but keeps the override's
        messages (after a conflict)."""
        web = self.web
        assert session.client is not None
        flashes = session.take_flashes()
        try:
            overview = await web.call(session, session.client.list_configs)
        except LoggedOut as out:
            return web.login_again(str(out))
        except RPCError as error:
            return web.render(
                request,
                session,
                "providers.html",
                status=503 if isinstance(error, UnavailableError) else 502,
                cards=[],
                head_revision=None,
                flashes=flashes,
                page_error=f"The stageconfig server at {web.settings.target} did not answer: "
                f"{error.message}",
            )
        cards = []
        for view in overview.stages:
            card = form_for(view)
            if override is not None and view.stage_type.value == override.stage:
                if fresh_stage:
                    card.error, card.conflict = override.error, override.conflict
                    card.key_was_entered = override.key_was_entered
                else:
                    override.view = view
                    card = override
            card.notices = [f for f in flashes if f.stage == card.stage]
            cards.append(card)
        return web.render(
            request,
            session,
            "providers.html",
            status=status,
            cards=cards,
            head_revision=overview.head_revision,
            flashes=[f for f in flashes if not f.stage],
        )

    async def providers(self, request: Request) -> Response:
        """GET /admin/providers."""
        session = self.web.session(request)
        if session is None or not session.logged_in:
            return self.web.redirect("/login")
        return await self._page(request, session)

    async def update(self, request: Request) -> Response:
        """POST /admin/providers/update: one stage's form → UpdateConfig."""
        posted = await self.web.posted_logged_in(request)
        if isinstance(posted, Response):
            return posted
        session, client, form = posted
        update = posted_update(form)
        if update is None:
            return Response("malformed form", status_code=400, media_type="text/plain")
        stage, submitted = update.stage, update.form
        if update.routes_error:
            submitted.errors["fallbacks"] = update.routes_error
            return await self._page(request, session, override=submitted, status=400)
        submitted.rollout = rollout_inputs(form)
        try:
            cohort = posted_rollout(submitted.rollout)
        except RolloutFormError as error:
            submitted.error = str(error)
            return await self._page(request, session, override=submitted, status=400)
        try:
            if cohort is not None:  # the stage form with "roll out to a cohort first"
                notice = started_text(await self._start_rollout(session, update, cohort))
            else:
                result = await self.web.call(
                    session,
                    client.update_config,
                    stage,
                    update.provider,
                    allow_unverified=update.allow_unverified,
                    **update.write_arguments(),
                )
                notice = _saved(result)
        except LoggedOut as out:
            return self.web.login_again(str(out))
        except ConflictError as error:
            wanted = f"{provider_label(update.provider)} {submitted.model or '(automatic model)'}"
            submitted.conflict = (
                f"Not saved: {stage.value} was changed by someone else since you opened this "
                f"page — it is now at revision {error.current_revision} (your form was at "
                f"revision {submitted.expected_revision}). Below is the current "
                f"configuration; review it and apply your change ({wanted}) again if it "
                "still makes sense."
            )
            return await self._page(
                request, session, override=submitted, status=409, fresh_stage=stage.value
            )
        except InvalidArgumentError as error:
            input_name = form_field(error.field)
            if input_name is None:
                submitted.error = error.message
            else:
                submitted.errors[input_name] = field_message(error)
            return await self._page(request, session, override=submitted, status=400)
        except RolloutStateError as error:  # a rollout started meanwhile: not the key's fault
            submitted.error = f"Not saved: {error.message}"
            return await self._page(request, session, override=submitted, status=409)
        except KeyRejectedError as error:
            submitted.errors["api_key"] = error.message
            return await self._page(request, session, override=submitted, status=400)
        except RPCError as error:
            submitted.error = f"Not saved: {error.message}"
            return await self._page(request, session, override=submitted, status=502)
        session.flashes.append(Flash(stage.value, notice))
        return self.web.redirect(f"/admin/providers#stage-{stage.value}")

    async def _start_rollout(
        self, session: Session, update: PostedUpdate, wanted: PostedRollout
    ) -> Rollout:
        """UpdateConfig with a RolloutSpec: the form's config for the cohort only."""
        assert session.client is not None
        return await self.web.call(
            session,
            session.client.start_rollout,
            update.stage,
            update.provider,
            percent=wanted.percent,
            client_ids=wanted.client_ids,
            bake_seconds=wanted.bake_seconds,
            min_tasks=wanted.min_tasks,
            max_failure_rate_increase=wanted.max_failure_rate_increase,
            **update.write_arguments(),
        )

    async def refresh(self, request: Request) -> Response:
        """POST /admin/providers/refresh: RefreshModels for one stage."""
        posted = await self.web.posted_logged_in(request)
        if isinstance(posted, Response):
            return posted
        session, client, form = posted
        stage = posted_stage(form.get("stage_type"))
        if stage is None:
            return Response("malformed form", status_code=400, media_type="text/plain")
        try:
            results = await self.web.call(session, client.refresh_models, stage)
        except LoggedOut as out:
            return self.web.login_again(str(out))
        except NotFoundError:
            session.flashes.append(
                Flash(stage.value, "Nothing to refresh: save a config first.", "error")
            )
        except RPCError as error:
            session.flashes.append(Flash(stage.value, f"Refresh failed: {error.message}", "error"))
        else:
            for r in results:
                message = f"Models refreshed: {len(r.models)} offered, status {r.status.value}."
                if r.replaced_model:
                    message += f" {r.replaced_model} vanished; now using {r.selected_model}."
                session.flashes.append(Flash(stage.value, message))
        return self.web.redirect(f"/admin/providers#stage-{stage.value}")
