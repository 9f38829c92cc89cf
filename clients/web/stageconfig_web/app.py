"""The admin page (migration plan §7) as a Starlette app: a client of the gRPC API only.

Routes::

    GET  /login, POST /login          log in with an admin token (checked with ListConfigs)
    POST /logout
    GET  /admin/providers             the four stages, one form each
    POST /admin/providers/update      UpdateConfig with the form's expected_revision
    POST /admin/providers/refresh     RefreshModels for one stage

Every call goes through the session's ``AdminClient`` holding the token the person
logged in with, so the revision log names them. Keys appear only masked; a new key is
typed into a password field and is never rendered back, not even after an error.
"""

from __future__ import annotations

import contextlib
import logging
import secrets
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import jinja2
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from stageconfig._types import ConfigSource, ProviderKind, StageType
from stageconfig.admin import AdminClient, StageView
from stageconfig.errors import (
    ConflictError,
    DeadlineExceededError,
    InvalidArgumentError,
    KeyRejectedError,
    NotFoundError,
    PermissionDeniedError,
    RPCError,
    UnauthenticatedError,
    UnavailableError,
)
from stageconfig_web.sessions import COOKIE_NAME, Flash, Session, SessionStore

log = logging.getLogger(__name__)

T = TypeVar("T")

HERE = Path(__file__).parent

OPTION_FIELDS: Mapping[ProviderKind, tuple[str, ...]] = {ProviderKind.YANDEX_GPT: ("folder_id",)}
"""Provider options the form offers (the server's KNOWN_OPTIONS)."""

# Where the server's field names (google.rpc.BadRequest) show up in a stage's form.
_FORM_FIELD: Mapping[str, str] = {
    "provider_kind": "provider_kind",
    "api_key": "api_key",
    "model": "model",
    "options.folder_id": "folder_id",
    "comment": "comment",
}

SECURITY_HEADERS: tuple[tuple[bytes, bytes], ...] = (
    # No scripts at all; styles and forms only from this origin; never framed.
    (
        b"content-security-policy",
        b"default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; "
        b"frame-ancestors 'none'; base-uri 'none'",
    ),
    (b"x-frame-options", b"DENY"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    # Pages show masked keys and who changed what: keep them out of shared caches.
    (b"cache-control", b"no-store"),
)


@dataclass(frozen=True, slots=True)
class WebSettings:
    """How the page reaches the server and protects its sessions."""

    target: str
    """The stageconfig server, host:port."""
    tls: bool = False
    """Use TLS to the server (implied by any certificate below)."""
    root_certificates: bytes | None = None
    """CA bundle (PEM) to verify the server; None: system roots."""
    client_certificate: bytes | None = None
    """Client certificate (PEM) for mTLS."""
    client_key: bytes | None = field(default=None, repr=False)
    """Client private key (PEM) for mTLS."""
    session_secret: bytes = field(default_factory=lambda: secrets.token_bytes(32), repr=False)
    """Signs session cookies. Sessions live in this process's memory, so a random
    secret per process loses nothing."""
    secure_cookies: bool = False
    """Mark the cookie Secure (serve over HTTPS, e.g. behind a TLS proxy)."""
    call_timeout: float = 30.0
    """Deadline of each gRPC call."""


@dataclass
class StageForm:
    """One stage's section of the page: what the server says plus the form's state."""

    view: StageView
    provider: str
    """The provider selected in the form."""
    model: str
    """The model selected in the form; empty: automatic."""
    folder_id: str
    comment: str = ""
    expected_revision: int = 0
    errors: dict[str, str] = field(default_factory=dict)
    """Form field → message."""
    error: str = ""
    """A message for the whole section."""
    conflict: str = ""
    notices: list[Flash] = field(default_factory=list)
    """Messages from the last action on this stage (saved, refreshed…)."""
    key_was_entered: bool = False

    @property
    def stage(self) -> str:
        """The stage's name (POEM…)."""
        return self.view.stage_type.value

    @property
    def status(self) -> str:
        """The badge text."""
        if self.view.config is None:
            return "UNCONFIGURED"
        return self.view.config.status.value

    @property
    def models(self) -> list[str]:
        """The model select's options: the cache, plus the selected model if missing."""
        models = list(self.view.models)
        config = self.view.config
        if config is not None and config.model and config.model not in models:
            models.insert(0, config.model)
        return models

    @property
    def option_fields(self) -> tuple[str, ...]:
        """Option inputs this stage's providers can use."""
        return tuple(name for p in self.view.allowed_providers for name in OPTION_FIELDS.get(p, ()))


def _form_for(view: StageView) -> StageForm:
    config = view.config
    return StageForm(
        view=view,
        provider=config.provider_kind.value if config else view.allowed_providers[0].value,
        model=config.model if config else "",
        folder_id=config.options.get("folder_id", "") if config else "",
        expected_revision=view.revision,
    )


def _description(error: InvalidArgumentError) -> str:
    # The server's message is "field: what is wrong"; next to the field, the rest is enough.
    prefix = f"{error.field}: "
    return error.message[len(prefix) :] if error.message.startswith(prefix) else error.message


def _age(value: datetime | None) -> str:
    if value is None:
        return "never"
    seconds = max(0, int((datetime.now(UTC) - value).total_seconds()))
    for unit, size in (("d", 86_400), ("h", 3_600), ("min", 60)):
        if seconds >= size:
            return f"{seconds // size} {unit} ago"
    return "just now"


class _SecurityHeaders:
    """Adds SECURITY_HEADERS to every response."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *SECURITY_HEADERS]
            await send(message)

        await self.app(scope, receive, send_with_headers)


class _LoggedOut(Exception):
    """The server no longer accepts the session's token."""


class AdminWeb:
    """The page's handlers, its session store and templates."""

    def __init__(self, settings: WebSettings) -> None:
        self.settings = settings
        self.sessions = SessionStore(settings.session_secret)
        env = jinja2.Environment(
            loader=jinja2.FileSystemLoader(HERE / "templates"),
            autoescape=True,
            undefined=jinja2.StrictUndefined,
        )
        env.filters["age"] = _age
        self.templates = Jinja2Templates(env=env)

    # -- plumbing ---------------------------------------------------------------------------

    def _session(self, request: Request) -> Session | None:
        return self.sessions.from_cookie(request.cookies.get(COOKIE_NAME))

    def _with_cookie(self, response: Response, session: Session) -> Response:
        response.set_cookie(
            COOKIE_NAME,
            self.sessions.cookie_value(session),
            httponly=True,
            samesite="strict",
            secure=self.settings.secure_cookies,
            path="/",
        )
        return response

    def _render(
        self, request: Request, session: Session, name: str, status: int = 200, **context: Any
    ) -> Response:
        context.setdefault("page_error", "")
        context.setdefault("flashes", [])
        response = self.templates.TemplateResponse(
            request,
            name,
            {"csrf_token": session.csrf_token, "target": self.settings.target, **context},
            status_code=status,
        )
        return self._with_cookie(response, session)

    @staticmethod
    def _redirect(url: str) -> RedirectResponse:
        return RedirectResponse(url, status_code=303)

    def _client(self, token: str | None) -> AdminClient:
        s = self.settings
        return AdminClient(
            s.target,
            token=token,
            tls=s.tls,
            root_certificates=s.root_certificates,
            client_certificate=s.client_certificate,
            client_key=s.client_key,
            timeout=s.call_timeout,
        )

    async def _call(self, session: Session, fn: Callable[..., T], *args: Any, **kw: Any) -> T:
        """Run a blocking AdminClient call off the event loop; a token the server stopped
        accepting ends the session."""
        try:
            return await run_in_threadpool(fn, *args, **kw)
        except (UnauthenticatedError, PermissionDeniedError) as error:
            self.sessions.drop(session)
            raise _LoggedOut(error.message) from error

    async def _posted(self, request: Request) -> tuple[Session | None, FormData]:
        """The session of a POST whose CSRF token matches, else None."""
        form = await request.form()
        session = self._session(request)
        token = form.get("csrf_token")
        if session is None or not session.csrf_ok(token if isinstance(token, str) else None):
            return None, form
        return session, form

    def _csrf_failed(self, request: Request) -> Response:
        # A stale form (the page restarted, the session expired) lands here too, so say
        # what to do rather than just "forbidden".
        return self.templates.TemplateResponse(
            request,
            "expired.html",
            {"target": self.settings.target, "flashes": [], "page_error": ""},
            status_code=403,
        )

    def _login_again(self, message: str) -> Response:
        session = self.sessions.create()
        session.flashes.append(Flash("", f"Please log in again: {message}", "error"))
        return self._with_cookie(self._redirect("/login"), session)

    # -- login ------------------------------------------------------------------------------

    async def login_page(self, request: Request) -> Response:
        """The login form."""
        session = self._session(request)
        if session is not None and session.logged_in:
            return self._redirect("/admin/providers")
        session = session or self.sessions.create()
        return self._render(request, session, "login.html", flashes=session.take_flashes())

    async def login(self, request: Request) -> Response:
        """Check the token with ListConfigs; on success start a fresh session."""
        session, form = await self._posted(request)
        if session is None:
            return self._csrf_failed(request)
        raw = form.get("token")
        token = raw.strip() if isinstance(raw, str) else ""
        client = self._client(token or None)
        try:
            await run_in_threadpool(client.list_configs)
        except RPCError as error:
            client.close()
            if isinstance(error, UnauthenticatedError):
                message = "The server does not accept this token."
            elif isinstance(error, PermissionDeniedError):
                message = "This token may not administer stageconfig (an admin token is needed)."
            elif isinstance(error, UnavailableError | DeadlineExceededError):
                message = f"Cannot reach the stageconfig server at {self.settings.target}."
            else:
                message = f"The server refused: {error.message}"
            return self._render(
                request, session, "login.html", status=401, flashes=[Flash("", message, "error")]
            )
        session = self.sessions.login(session, client)
        return self._with_cookie(self._redirect("/admin/providers"), session)

    async def logout(self, request: Request) -> Response:
        """End the session."""
        session, _form = await self._posted(request)
        if session is None:
            return self._csrf_failed(request)
        self.sessions.drop(session)
        response = self._redirect("/login")
        response.delete_cookie(COOKIE_NAME, path="/")
        return response

    # -- the providers page ----------------------------------------------------------------

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
        assert session.client is not None
        flashes = session.take_flashes()
        try:
            overview = await self._call(session, session.client.list_configs)
        except _LoggedOut as out:
            return self._login_again(str(out))
        except RPCError as error:
            return self._render(
                request,
                session,
                "providers.html",
                status=503 if isinstance(error, UnavailableError) else 502,
                cards=[],
                head_revision=None,
                flashes=flashes,
                page_error=f"The stageconfig server at {self.settings.target} did not answer: "
                f"{error.message}",
            )
        cards = []
        for view in overview.stages:
            card = _form_for(view)
            if override is not None and view.stage_type.value == override.stage:
                if fresh_stage:
                    card.error, card.conflict = override.error, override.conflict
                    card.key_was_entered = override.key_was_entered
                else:
                    override.view = view
                    card = override
            card.notices = [f for f in flashes if f.stage == card.stage]
            cards.append(card)
        return self._render(
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
        session = self._session(request)
        if session is None or not session.logged_in:
            return self._redirect("/login")
        return await self._page(request, session)

    async def update(self, request: Request) -> Response:
        """POST /admin/providers/update: one stage's form → UpdateConfig."""
        session, form = await self._posted(request)
        if session is None:
            return self._csrf_failed(request)
        if session.client is None:
            return self._redirect("/login")

        def text(name: str) -> str:
            value = form.get(name)
            return value.strip() if isinstance(value, str) else ""

        try:
            stage = StageType(text("stage_type"))
            provider = ProviderKind(text("provider_kind"))
            expected = int(text("expected_revision"))
        except ValueError:
            return Response("malformed form", status_code=400, media_type="text/plain")
        api_key = form.get("api_key")
        new_key = api_key if isinstance(api_key, str) and api_key != "" else None
        options = {
            name: text(name)
            for name in OPTION_FIELDS.get(provider, ())
            if text(name)  # an empty option keeps the stored one
        }
        submitted = StageForm(
            view=StageView(stage, ConfigSource.UNCONFIGURED, None, (), ()),  # replaced
            provider=provider.value,
            model=text("model"),
            folder_id=text("folder_id"),
            comment=text("comment"),
            expected_revision=expected,
            key_was_entered=new_key is not None,
        )
        try:
            result = await self._call(
                session,
                session.client.update_config,
                stage,
                provider,
                api_key=new_key,
                model=submitted.model or None,
                options=options or None,
                expected_revision=expected,
                comment=submitted.comment,
            )
        except _LoggedOut as out:
            return self._login_again(str(out))
        except ConflictError as error:
            current = error.current_revision
            wanted = f"{provider.value} {submitted.model or '(automatic model)'}"
            submitted.conflict = (
                f"Not saved: {stage.value} was changed by someone else since you opened this "
                f"page — it is now at revision {current} (your form was at revision "
                f"{expected}). Below is the current configuration; review it and apply your "
                f"change ({wanted}) again if it still makes sense."
            )
            return await self._page(
                request, session, override=submitted, status=409, fresh_stage=stage.value
            )
        except InvalidArgumentError as error:
            form_field = _FORM_FIELD.get(error.field)
            if form_field is None:
                submitted.error = error.message
            else:
                submitted.errors[form_field] = _description(error)
            return await self._page(request, session, override=submitted, status=400)
        except KeyRejectedError as error:
            submitted.errors["api_key"] = error.message
            return await self._page(request, session, override=submitted, status=400)
        except RPCError as error:
            submitted.error = f"Not saved: {error.message}"
            return await self._page(request, session, override=submitted, status=502)
        config = result.config
        text_ = f"Saved: revision {config.revision}, {config.provider_kind.value} {config.model}, "
        text_ += f"status {config.status.value}."
        if config.status_reason:
            text_ += f" {config.status_reason}"
        session.flashes.append(Flash(stage.value, text_))
        return self._redirect(f"/admin/providers#stage-{stage.value}")

    async def refresh(self, request: Request) -> Response:
        """POST /admin/providers/refresh: RefreshModels for one stage."""
        session, form = await self._posted(request)
        if session is None:
            return self._csrf_failed(request)
        if session.client is None:
            return self._redirect("/login")
        raw = form.get("stage_type")
        try:
            stage = StageType(raw if isinstance(raw, str) else "")
        except ValueError:
            return Response("malformed form", status_code=400, media_type="text/plain")
        try:
            results = await self._call(session, session.client.refresh_models, stage)
        except _LoggedOut as out:
            return self._login_again(str(out))
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
        return self._redirect(f"/admin/providers#stage-{stage.value}")

    async def index(self, request: Request) -> Response:
        """GET / → the providers page."""
        return self._redirect("/admin/providers")


def create_app(settings: WebSettings) -> Starlette:
    """The ASGI app of the admin page."""
    web = AdminWeb(settings)

    @contextlib.asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        yield
        web.sessions.close()

    app = Starlette(
        routes=[
            Route("/", web.index),
            Route("/login", web.login_page, methods=["GET"]),
            Route("/login", web.login, methods=["POST"]),
            Route("/logout", web.logout, methods=["POST"]),
            Route("/admin/providers", web.providers, methods=["GET"]),
            Route("/admin/providers/update", web.update, methods=["POST"]),
            Route("/admin/providers/refresh", web.refresh, methods=["POST"]),
            Mount("/static", StaticFiles(directory=HERE / "static"), name="static"),
        ],
        lifespan=lifespan,
    )
    app.add_middleware(_SecurityHeaders)
    return app


__all__ = ["AdminWeb", "StageForm", "WebSettings", "create_app"]
