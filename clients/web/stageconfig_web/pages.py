"""``AdminWeb``: what every page handler shares — the settings, the session store, the
templates, and how a handler renders, redirects, checks a posted form's CSRF token and
runs a blocking ``AdminClient`` call off the event loop."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import jinja2
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.templating import Jinja2Templates

from stageconfig import PermissionDeniedError, UnauthenticatedError
from stageconfig.admin import AdminClient
from stageconfig_web.display import (
    age,
    field_label,
    provider_label,
    report_age,
    rollout_policy,
    rollout_side,
    stage_label,
    when,
)
from stageconfig_web.sessions import COOKIE_NAME, Flash, Session, SessionStore
from stageconfig_web.settings import WebSettings

T = TypeVar("T")

HERE = Path(__file__).parent


class LoggedOut(Exception):
    """The server no longer accepts the session's token."""


class AdminWeb:
    """The page's settings, session store and templates, and the plumbing its handlers
    share."""

    def __init__(self, settings: WebSettings) -> None:
        self.settings = settings
        self.sessions = SessionStore(settings.session_secret)
        env = jinja2.Environment(
            loader=jinja2.FileSystemLoader(HERE / "templates"),
            autoescape=True,
            undefined=jinja2.StrictUndefined,
        )
        env.filters["age"] = age
        env.filters["report_age"] = report_age
        env.filters["when"] = when
        env.filters["provider_label"] = provider_label
        env.filters["stage_label"] = stage_label
        env.filters["field_label"] = field_label
        env.filters["rollout_side"] = rollout_side
        env.filters["rollout_policy"] = rollout_policy
        self.templates = Jinja2Templates(env=env)

    def session(self, request: Request) -> Session | None:
        """The live session the request's cookie names."""
        return self.sessions.from_cookie(request.cookies.get(COOKIE_NAME))

    def with_cookie(self, response: Response, session: Session) -> Response:
        """``response`` setting the session cookie (HttpOnly, SameSite=Strict)."""
        response.set_cookie(
            COOKIE_NAME,
            self.sessions.cookie_value(session),
            httponly=True,
            samesite="strict",
            secure=self.settings.secure_cookies,
            path="/",
        )
        return response

    def render(
        self, request: Request, session: Session, name: str, status: int = 200, **context: Any
    ) -> Response:
        """A template with the session's CSRF token, keeping the session cookie."""
        context.setdefault("page_error", "")
        context.setdefault("flashes", [])
        response = self.templates.TemplateResponse(
            request,
            name,
            {"csrf_token": session.csrf_token, "target": self.settings.target, **context},
            status_code=status,
        )
        return self.with_cookie(response, session)

    @staticmethod
    def redirect(url: str) -> RedirectResponse:
        """A 303 to ``url`` (after a POST)."""
        return RedirectResponse(url, status_code=303)

    def client(self, token: str | None, *, timeout: float | None = None) -> AdminClient:
        """An AdminClient to the server with this person's token (``timeout``: each
        call's deadline, the settings' by default)."""
        s = self.settings
        deadline = s.call_timeout if timeout is None else timeout
        return AdminClient(s.target, token=token, tls=s.tls, timeout=deadline)

    async def call(self, session: Session, fn: Callable[..., T], *args: Any, **kw: Any) -> T:
        """Run a blocking AdminClient call off the event loop; a token the server stopped
        accepting ends the session (LoggedOut)."""
        try:
            return await run_in_threadpool(fn, *args, **kw)
        except (UnauthenticatedError, PermissionDeniedError) as error:
            self.sessions.drop(session)
            raise LoggedOut(error.message) from error

    async def posted(self, request: Request) -> tuple[Session | None, FormData]:
        """The session of a POST whose CSRF token matches (else None), and its form."""
        form = await request.form()
        session = self.session(request)
        token = form.get("csrf_token")
        if session is None or not session.csrf_ok(token if isinstance(token, str) else None):
            return None, form
        return session, form

    async def posted_logged_in(
        self, request: Request
    ) -> tuple[Session, AdminClient, FormData] | Response:
        """A POST of a logged-in session with its CSRF token, or the response refusing
        it (the expired-form page, or a redirect to the login)."""
        session, form = await self.posted(request)
        if session is None:
            return self.csrf_failed(request)
        if session.client is None:
            return self.redirect("/login")
        return session, session.client, form

    def csrf_failed(self, request: Request) -> Response:
        """403 for a form not sent from this session's page."""
        # A stale form (the page restarted, the session expired) lands here too, so say
        # what to do rather than just "forbidden".
        return self.templates.TemplateResponse(
            request,
            "expired.html",
            {"target": self.settings.target, "flashes": [], "page_error": ""},
            status_code=403,
        )

    def login_again(self, message: str) -> Response:
        """To the login form, saying why."""
        session = self.sessions.create()
        session.flashes.append(Flash("", f"Please log in again: {message}", "error"))
        return self.with_cookie(self.redirect("/login"), session)
