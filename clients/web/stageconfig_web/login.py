"""The login and logout handlers: an admin token checked with ListConfigs starts a fresh
session holding that person's ``AdminClient``. The login form says so when the server
checks no tokens at all (a development server): there, no token is needed.

Failed logins are throttled per client address (``LoginThrottle``): after
``MAX_FAILED_LOGINS`` refused tokens within ``FAILED_LOGIN_WINDOW_SECONDS``, further
attempts from that address get 429 with ``Retry-After`` and are not even checked,
until the oldest failure leaves the window. Guessing a token through the page is then
a few attempts a minute, and the server's log is not flooded by the page either.
"""

from __future__ import annotations

import collections
import math
import time
from collections.abc import Callable

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from stageconfig import (
    DeadlineExceededError,
    PermissionDeniedError,
    RPCError,
    UnauthenticatedError,
    UnavailableError,
)
from stageconfig_web.pages import AdminWeb
from stageconfig_web.sessions import COOKIE_NAME, Flash

PROBE_TIMEOUT_SECONDS = 3.0
"""How long the login form waits to learn whether the server needs a token at all."""
PROBE_TTL_SECONDS = 60.0
"""How long that answer is reused: a server with tokens logs each token-less call it
refuses, and a login form reloaded in a loop must not fill its log."""


MAX_FAILED_LOGINS = 5
"""Refused tokens one client address may send within the window before it waits."""
FAILED_LOGIN_WINDOW_SECONDS = 60.0
MAX_TRACKED_ADDRESSES = 10_000
"""Addresses remembered at once (the oldest forgotten first): bounded memory."""


class LoginThrottle:
    """Failed logins per client address in a sliding window."""

    def __init__(
        self,
        *,
        max_failures: int = MAX_FAILED_LOGINS,
        window_seconds: float = FAILED_LOGIN_WINDOW_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._max = max_failures
        self._window = window_seconds
        self._clock = clock
        self._failures: collections.OrderedDict[str, collections.deque[float]] = (
            collections.OrderedDict()
        )

    def _recent(self, address: str) -> collections.deque[float]:
        failures = self._failures.get(address)
        if failures is None:
            return collections.deque()
        cutoff = self._clock() - self._window
        while failures and failures[0] <= cutoff:
            failures.popleft()
        if not failures:
            del self._failures[address]
        return failures

    def retry_after(self, address: str) -> float | None:
        """Seconds until ``address`` may try again; None when it may now."""
        failures = self._recent(address)
        if len(failures) < self._max:
            return None
        return max(failures[0] + self._window - self._clock(), 0.0)

    def failed(self, address: str) -> None:
        """Record a refused token from ``address``."""
        failures = self._failures.pop(address, None) or collections.deque()
        failures.append(self._clock())
        self._failures[address] = failures  # most recent last
        while len(self._failures) > MAX_TRACKED_ADDRESSES:
            self._failures.popitem(last=False)

    def succeeded(self, address: str) -> None:
        """A good token from ``address``: its count starts over."""
        self._failures.pop(address, None)


class LoginPages:
    """GET/POST /login and POST /logout."""

    def __init__(self, web: AdminWeb, throttle: LoginThrottle | None = None) -> None:
        self.web = web
        self.throttle = throttle or LoginThrottle()
        self._probed: tuple[float, bool] | None = None
        """When the server was last asked whether it checks tokens, and its answer."""

    async def login_page(self, request: Request) -> Response:
        """The login form."""
        web = self.web
        session = web.session(request)
        if session is not None and session.logged_in:
            return web.redirect("/admin/providers")
        session = session or web.sessions.create()
        return web.render(
            request,
            session,
            "login.html",
            flashes=session.take_flashes(),
            open_server=await self._server_checks_no_tokens(),
        )

    async def _server_checks_no_tokens(self) -> bool:
        """Whether the server answers ListConfigs without a token (a development
        server); asked again after PROBE_TTL_SECONDS, as the server may restart."""
        now = time.monotonic()
        if self._probed is not None and now - self._probed[0] < PROBE_TTL_SECONDS:
            return self._probed[1]
        client = self.web.client(None, timeout=PROBE_TIMEOUT_SECONDS)
        try:
            await run_in_threadpool(client.list_configs)
            open_server = True
        except RPCError:
            open_server = False  # a token is needed, or the server cannot say now
        finally:
            client.close()
        self._probed = (now, open_server)
        return open_server

    async def login(self, request: Request) -> Response:
        """Check the token with ListConfigs; on success start a fresh session."""
        web = self.web
        session, form = await web.posted(request)
        if session is None:
            return web.csrf_failed(request)
        address = request.client.host if request.client is not None else ""
        wait = self.throttle.retry_after(address)
        if wait is not None:
            seconds = max(1, math.ceil(wait))
            response = web.render(
                request,
                session,
                "login.html",
                status=429,
                flashes=[
                    Flash(
                        "",
                        f"Too many refused tokens from your address: try again in {seconds} s.",
                        "error",
                    )
                ],
                open_server=False,
            )
            response.headers["Retry-After"] = str(seconds)
            return response
        raw = form.get("token")
        token = raw.strip() if isinstance(raw, str) else ""
        client = web.client(token or None)
        try:
            await run_in_threadpool(client.list_configs)
        except RPCError as error:
            client.close()
            if isinstance(error, UnauthenticatedError | PermissionDeniedError):
                self.throttle.failed(address)  # not an unreachable server: no guess made
            return web.render(
                request,
                session,
                "login.html",
                status=401,
                flashes=[Flash("", self._refusal(error), "error")],
                open_server=False,
            )
        self.throttle.succeeded(address)
        session = web.sessions.login(session, client)
        return web.with_cookie(web.redirect("/admin/providers"), session)

    def _refusal(self, error: RPCError) -> str:
        if isinstance(error, UnauthenticatedError):
            return "The server does not accept this token."
        if isinstance(error, PermissionDeniedError):
            return "This token may not administer stageconfig (an admin token is needed)."
        if isinstance(error, UnavailableError | DeadlineExceededError):
            return f"Cannot reach the stageconfig server at {self.web.settings.target}."
        return f"The server refused: {error.message}"

    async def logout(self, request: Request) -> Response:
        """End the session."""
        web = self.web
        session, _form = await web.posted(request)
        if session is None:
            return web.csrf_failed(request)
        web.sessions.drop(session)
        response = web.redirect("/login")
        response.delete_cookie(COOKIE_NAME, path="/")
        return response
