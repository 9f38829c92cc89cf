"""The admin page (migration plan §7) as a Starlette app: a client of the gRPC API only.

Routes::

    GET  /login, POST /login          log in with an admin token (checked with ListConfigs)
    POST /logout
    GET  /admin/providers             the four stages, one form each
    POST /admin/providers/update      UpdateConfig with the form's expected_revision
    POST /admin/providers/refresh     RefreshModels for one stage
    GET  /admin/providers/{stage}/history   one stage's revisions, newest first
    POST /admin/providers/rollback    RollbackConfig with the page's expected_revision
    POST /admin/providers/rollout/promote   PromoteRollout with the candidate's revision
    POST /admin/providers/rollout/abort     AbortRollout with the candidate's revision
    GET  /admin/fleet                 what the workers run: revisions, NACKs, failure rates

Modules: ``settings`` (WebSettings), ``pages`` (what every handler shares), ``login``,
``providers``, ``history``, ``rollouts`` and ``fleet`` (the handlers), ``forms`` (the
stage forms' view models),
``display`` (names, ages and times as people write them), ``sessions`` (cookies, CSRF),
``security`` (response headers). Keys appear only masked; a new key is
typed into a password field and is never rendered back, not even after an error.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from stageconfig_web.fleet import FleetPages
from stageconfig_web.forms import StageForm
from stageconfig_web.history import HistoryPages
from stageconfig_web.login import LoginPages
from stageconfig_web.pages import HERE, AdminWeb
from stageconfig_web.providers import ProviderPages
from stageconfig_web.rollouts import RolloutPages
from stageconfig_web.security import SecurityHeaders
from stageconfig_web.settings import WebSettings


def create_app(settings: WebSettings) -> Starlette:
    """The ASGI app of the admin page."""
    web = AdminWeb(settings)
    login, providers, history = LoginPages(web), ProviderPages(web), HistoryPages(web)
    fleet, rollouts = FleetPages(web), RolloutPages(web)

    async def index(_request: Request) -> Response:
        return web.redirect("/admin/providers")

    @contextlib.asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        yield
        web.sessions.close()

    app = Starlette(
        routes=[
            Route("/", index),
            Route("/login", login.login_page, methods=["GET"]),
            Route("/login", login.login, methods=["POST"]),
            Route("/logout", login.logout, methods=["POST"]),
            Route("/admin/providers", providers.providers, methods=["GET"]),
            Route("/admin/providers/update", providers.update, methods=["POST"]),
            Route("/admin/providers/refresh", providers.refresh, methods=["POST"]),
            Route("/admin/providers/rollback", history.rollback, methods=["POST"]),
            Route("/admin/providers/rollout/promote", rollouts.promote, methods=["POST"]),
            Route("/admin/providers/rollout/abort", rollouts.abort, methods=["POST"]),
            Route("/admin/providers/{stage}/history", history.history, methods=["GET"]),
            Route("/admin/fleet", fleet.fleet, methods=["GET"]),
            Mount("/static", StaticFiles(directory=HERE / "static"), name="static"),
        ],
        lifespan=lifespan,
    )
    app.add_middleware(SecurityHeaders)
    return app


__all__ = ["AdminWeb", "StageForm", "WebSettings", "create_app"]
