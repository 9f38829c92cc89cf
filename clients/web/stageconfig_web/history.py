"""The history page of one stage: its revisions newest first, each with who made it,
why, the comment and the fields that changed (keys only by fingerprint, as the server
records them), and a Roll back button on every revision but the current one.

A rollback is conditional, like a save: its form carries the stage's revision when the
page was loaded (``expected_revision``), and if someone changed the stage meanwhile the
page shows the conflict and the current history instead of rolling back.
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
    StageConfig,
    StageType,
    UnavailableError,
)
from stageconfig_web.forms import posted_stage
from stageconfig_web.pages import AdminWeb, LoggedOut
from stageconfig_web.sessions import Flash, Session

PAGE_SIZE = 20
"""History entries per page (the server allows up to 100)."""


def history_url(stage: StageType) -> str:
    """Where a stage's history page is."""
    return f"/admin/providers/{stage.value}/history"


def _rolled_back(to_revision: int, config: StageConfig) -> str:
    # Worded like the Save notice (providers._saved), enum names included.
    text = (
        f"Rolled back: revision {to_revision} restored as revision {config.revision}, "
        f"{config.provider_kind.value} {config.model}, status {config.status.value}."
    )
    return f"{text} {config.status_reason}" if config.status_reason else text


def _int(value: object) -> int | None:
    try:
        return int(value) if isinstance(value, str) else None
    except ValueError:
        return None


class HistoryPages:
    """GET /admin/providers/{stage}/history and POST /admin/providers/rollback."""

    def __init__(self, web: AdminWeb) -> None:
        self.web = web

    async def history(self, request: Request) -> Response:
        """GET /admin/providers/{stage}/history[?page_token=…]."""
        session = self.web.session(request)
        if session is None or not session.logged_in:
            return self.web.redirect("/login")
        stage = posted_stage(request.path_params.get("stage"))
        if stage is None:
            return Response("no such stage", status_code=404, media_type="text/plain")
        token = request.query_params.get("page_token", "")
        return await self._page(request, session, stage, page_token=token)

    async def _page(
        self,
        request: Request,
        session: Session,
        stage: StageType,
        *,
        page_token: str = "",
        conflict: str = "",
        error: str = "",
        status: int = 200,
    ) -> Response:
        """The history page of ``stage``, with a conflict or an error banner if given."""
        web = self.web
        assert session.client is not None
        client = session.client
        flashes = session.take_flashes()
        context = {
            "stage": stage.value,
            "conflict": conflict,
            "error": error,
            "notices": [f for f in flashes if f.stage == stage.value],
            "flashes": [f for f in flashes if not f.stage],
        }
        try:
            overview = await web.call(session, client.list_configs)
            try:
                page = await web.call(
                    session, client.history, stage, page_size=PAGE_SIZE, page_token=page_token
                )
            except InvalidArgumentError:  # a token from an older page of a restarted server
                context["error"] = (
                    "That page of the history is no longer there: the newest is shown."
                )
                page = await web.call(session, client.history, stage, page_size=PAGE_SIZE)
        except LoggedOut as out:
            return web.login_again(str(out))
        except RPCError as failure:
            return web.render(
                request,
                session,
                "history.html",
                status=503 if isinstance(failure, UnavailableError) else 502,
                view=None,
                entries=(),
                next_page_token="",
                head_revision=None,
                page_error=f"The stageconfig server at {web.settings.target} did not answer: "
                f"{failure.message}",
                **context,
            )
        views = [v for v in overview.stages if v.stage_type is stage]
        return web.render(
            request,
            session,
            "history.html",
            status=status,
            view=views[0] if views else None,  # None: this server does not list the stage
            entries=page.entries,
            next_page_token=page.next_page_token,
            head_revision=overview.head_revision,
            **context,
        )

    async def rollback(self, request: Request) -> Response:
        """POST /admin/providers/rollback: RollbackConfig with the page's revision."""
        posted = await self.web.posted_logged_in(request)
        if isinstance(posted, Response):
            return posted
        session, client, form = posted
        stage = posted_stage(form.get("stage_type"))
        to_revision = _int(form.get("to_revision"))
        expected = _int(form.get("expected_revision"))
        if stage is None or to_revision is None or expected is None:
            return Response("malformed form", status_code=400, media_type="text/plain")
        try:
            config = await self.web.call(
                session, client.rollback, stage, to_revision, expected_revision=expected
            )
        except LoggedOut as out:
            return self.web.login_again(str(out))
        except ConflictError as error:
            conflict = (
                f"Not rolled back: {stage.value} was changed by someone else since you opened "
                f"this page — it is now at revision {error.current_revision} (your page was at "
                f"revision {expected}). Below is the current history; roll back to revision "
                f"{to_revision} again if it still makes sense."
            )
            return await self._page(request, session, stage, conflict=conflict, status=409)
        except RPCError as error:
            refused = isinstance(error, InvalidArgumentError | KeyRejectedError | NotFoundError)
            message = f"Not rolled back to revision {to_revision}: {error.message}"
            return await self._page(
                request, session, stage, error=message, status=400 if refused else 502
            )
        session.flashes.append(Flash(stage.value, _rolled_back(to_revision, config)))
        return self.web.redirect(history_url(stage))
