"""A fake of every AI provider this service talks to, as one real local HTTP server.

Usage (any test in the project)::

    with FakeProviders() as fake:
        adapters = build_adapters(fake.base_urls(), timeout_seconds=2)
        fake.reject_key("sk-bad")                      # this key gets the auth error
        fake.fail_key("sk-typo", "no_connected_db")    # this key gets that failure
        fake.set_failure(ProviderKind.GEMINI, "quota") # Gemini answers 429 for all keys
        fake.fail_model("gpt-broken", "server_error")   # generating with it fails
        env = {**os.environ, **fake.env()}             # for a server in a subprocess

One ``ThreadingHTTPServer`` on 127.0.0.1 (port 0), one URL prefix per kind, each
speaking that provider's wire format from providers.md (JSON shapes, error bodies,
auth headers). Every request is recorded (``requests``) so tests can check that the
key went in the right header. A configured failure applies to every key of that
kind; otherwise a missing or rejected key gets the provider's auth error.

Failures (``set_failure``; SUPPORTED_FAILURES says which kind knows which)::

    invalid_key          the provider's "bad key" answer (401 / Gemini 400 API_KEY_INVALID /
                         Yandex grpcCode 16 / fal "No user found…" / sunoapi 401)
    permission           403 (OpenAI scopes, Gemini PERMISSION_DENIED, Yandex grpcCode 7, fal)
    quota                out of quota/credits (OpenAI insufficient_quota, Gemini 429 PerDay,
                         Yandex 429 quota, sunoapi 429 "insufficient credits",
                         fal 403 "Exhausted balance")
    rate_limit           too many requests (429 / Gemini PerMinute / sunoapi code 430)
    region               OpenAI 403 unsupported_country_region_territory,
                         Gemini 400 FAILED_PRECONDITION "User location is not supported"
    server_error         500 in the provider's error format
    malformed            HTTP 200, Content-Type application/json, truncated JSON
    hang                 accept the request, never answer until the failure changes or stop()
    listing_unavailable  404 on the model listing (OpenAI, Gemini, YandexGPT)
    not_implemented      501 on the model listing (YandexGPT)
    body_error_401/429/455  sunoapi: HTTP 200 whose body carries code 401/429/455
    no_connected_db      an OpenAI-compatible proxy (LiteLLM) without its database: HTTP 400
                         ``{"error": {"message": "No connected db.", "type": "no_db_connection",
                         "code": "400"}}`` — neither accepts nor rejects the key. LiteLLM answers
                         so for every key but its master key: ``fail_key`` models that.

Generation, for workers' tests: ``POST /v1/chat/completions`` (OpenAI, YandexGPT) and
``POST /v1[beta]/models/{model}:generateContent`` (Gemini) answer with a short text
naming the model; a model the listing does not offer gets the provider's 404, and a
model given to ``fail_model`` gets that failure (the listing still offers it: a model
that verifies but cannot generate, a bad canary).
``POST /tts/v3/utteranceSynthesis`` (SpeechKit) answers one JSON line whose audio chunk
names the voice and the text; SpeechKit synthesis can fail too
(``SPEECHKIT_SYNTHESIS_FAILURES``, by kind or by key: a key pool's exhausted key).
``set_retry_after(kind, "7")`` adds ``Retry-After: 7`` to that kind's 429 answers.
"""

from __future__ import annotations

import base64
import contextlib
import json
import socket
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from stageconfig_server.domain import ProviderKind
from stageconfig_server.providers.registry import BASE_URL_ENV

PREFIXES: Mapping[ProviderKind, str] = {
    ProviderKind.OPENAI: "/openai",
    ProviderKind.GEMINI: "/gemini",
    ProviderKind.YANDEX_GPT: "/yandex-gpt",
    ProviderKind.SPEECHKIT: "/speechkit",
    ProviderKind.SUNO: "/suno",
    ProviderKind.PIKA: "/pika",
}
"""URL prefix per kind; the provider's own paths follow it."""

# What base_url() adds after the prefix: the OpenAI-style SDKs take a base URL that
# already includes /v1 (registry.py documents each kind's convention).
_BASE_SUFFIX: Mapping[ProviderKind, str] = {
    ProviderKind.OPENAI: "/v1",
    ProviderKind.YANDEX_GPT: "/v1",
}

DEFAULT_MODELS: Mapping[ProviderKind, tuple[str, ...]] = {
    ProviderKind.OPENAI: ("gpt-4o", "gpt-4o-mini", "o3-mini"),
    ProviderKind.GEMINI: ("gemini-2.5-flash", "gemini-2.5-pro"),
    ProviderKind.YANDEX_GPT: ("yandexgpt/latest", "yandexgpt-lite/latest"),
}
"""What each listing offers until ``set_models``; kinds absent here have no listing."""

OPENAI_NON_CHAT_MODELS: tuple[str, ...] = (
    "text-embedding-3-small",
    "whisper-1",
    "tts-1",
    "dall-e-3",
    "omni-moderation-latest",
    "gpt-4o-realtime-preview",
    "gpt-4o-audio-preview",
    "gpt-4o-mini-transcribe",
    "gpt-4o-mini-tts",
    "gpt-image-1",
    "gpt-4o-search-preview",
    "gpt-3.5-turbo-instruct",
)
"""Always listed next to the chat models: the adapter must filter all of these out."""

GEMINI_NON_GENERATE_MODEL = "gemini-embedding-001"
"""Always listed (first, supports only embedContent): the adapter must drop it."""

GEMINI_MAX_PAGE_SIZE = 2
"""The fake's server-side cap on ``pageSize`` (the real API caps at 1000), so the
default listing (embedding model + two Gemini models) always spans two pages."""

OPENAI_CREATED_BASE = 1_700_000_000
"""``created`` of the first listed OpenAI model; each next one is a day newer."""

FAILURES: frozenset[str] = frozenset(
    {
        "invalid_key",
        "permission",
        "quota",
        "rate_limit",
        "region",
        "server_error",
        "malformed",
        "hang",
        "listing_unavailable",
        "not_implemented",
        "body_error_401",
        "body_error_429",
        "body_error_455",
        "no_connected_db",
    }
)
"""Every failure name ``set_failure`` understands."""

_COMMON = frozenset({"invalid_key", "quota", "rate_limit", "server_error", "malformed", "hang"})
SUPPORTED_FAILURES: Mapping[ProviderKind, frozenset[str]] = {
    ProviderKind.OPENAI: _COMMON
    | {"permission", "region", "listing_unavailable", "no_connected_db"},
    ProviderKind.GEMINI: _COMMON | {"permission", "region", "listing_unavailable"},
    ProviderKind.YANDEX_GPT: _COMMON | {"permission", "listing_unavailable", "not_implemented"},
    ProviderKind.SPEECHKIT: frozenset(),  # never contacted: nothing to fail
    ProviderKind.SUNO: _COMMON | {"body_error_401", "body_error_429", "body_error_455"},
    ProviderKind.PIKA: _COMMON | {"permission"},
}
"""Which failures each kind can simulate; others raise ValueError in ``set_failure``."""

SPEECHKIT_SYNTHESIS_FAILURES = frozenset(
    {"invalid_key", "quota", "rate_limit", "server_error", "hang"}
)
"""What SpeechKit's synthesis (workers call it; the server never does) can simulate."""


def _supports(kind: ProviderKind, failure: str) -> bool:
    if kind is ProviderKind.SPEECHKIT:
        return failure in SPEECHKIT_SYNTHESIS_FAILURES
    return failure in SUPPORTED_FAILURES[kind]


@dataclass(frozen=True, slots=True)
class RecordedRequest:
    """One request the fake received."""

    kind: ProviderKind | None
    """Which provider's prefix it hit (None: no known prefix)."""
    method: str
    path: str
    """The provider-side path, below the kind's prefix and without the query: ``/v1/models``."""
    query: Mapping[str, str]
    headers: Mapping[str, str] = field(repr=False)
    """Header names lower-cased (``authorization``, ``x-goog-api-key``, ``openai-project``)."""
    body: bytes = field(default=b"", repr=False)
    """The request body (JSON for the generation calls)."""

    def header(self, name: str) -> str | None:
        """A header's value by case-insensitive name."""
        return self.headers.get(name.lower())


@dataclass(frozen=True, slots=True)
class _Reply:
    status: int
    body: bytes
    content_type: str = "application/json"
    headers: tuple[tuple[str, str], ...] = ()


def _json(status: int, payload: object) -> _Reply:
    return _Reply(status, json.dumps(payload).encode())


_MALFORMED: Mapping[ProviderKind, bytes] = {
    ProviderKind.OPENAI: b'{"object": "list", "data": [{"id": "gpt-4o", "obj',
    ProviderKind.GEMINI: b'{"models": [{"name": "models/gemini-2.5-fl',
    ProviderKind.YANDEX_GPT: b'{"object": "list", "data": [',
    ProviderKind.SUNO: b'{"code": 200, "msg": "succ',
    ProviderKind.PIKA: b'{"prices": [{"endpoint_id": ',
}


class FakeProviders:
    """A real HTTP server on 127.0.0.1 (port 0, in a background thread) speaking every
    provider's wire format, one URL prefix per kind."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._received = threading.Condition(self._lock)
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._connections: set[socket.socket] = set()
        self._requests: list[RecordedRequest] = []
        self._models: dict[ProviderKind, tuple[str, ...]] = dict(DEFAULT_MODELS)
        self._failures: dict[ProviderKind, str] = {}
        self._rejected: set[str] = set()
        self._key_failures: dict[str, str] = {}
        self._model_failures: dict[str, str] = {}
        self._retry_after: dict[ProviderKind, str] = {}
        # Hung handlers wait on their kind's event; it is set (and replaced) when that
        # kind's failure changes, on reset() and on stop(), so a "hang" never outlives
        # its test and never cuts short a hang of another kind.
        self._release: dict[ProviderKind, threading.Event] = {
            kind: threading.Event() for kind in ProviderKind
        }

    # --- lifecycle -----------------------------------------------------------------

    def start(self) -> FakeProviders:
        """Bind 127.0.0.1:0 and serve in a daemon thread; returns self."""
        if self._server is not None:
            raise RuntimeError("FakeProviders is already started")
        server = _Server(("127.0.0.1", 0), _Handler)
        server.fake = self
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="fake-providers",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving, release hung handlers and close every open connection."""
        server, self._server = self._server, None
        if server is None:
            return
        self._release_hung(*ProviderKind)
        server.shutdown()
        server.server_close()
        with self._lock:
            connections = list(self._connections)
            self._connections.clear()
        for conn in connections:
            # Unblocks handler threads parked on keep-alive reads.
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> FakeProviders:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # --- where to point clients -------------------------------------------------------

    @property
    def root_url(self) -> str:
        """``http://127.0.0.1:<port>``."""
        if self._server is None:
            raise RuntimeError("FakeProviders is not started")
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def base_url(self, kind: ProviderKind) -> str:
        """The value for ``STAGECONFIG_<KIND>_BASE_URL`` (registry.py's per-kind convention)."""
        return f"{self.root_url}{PREFIXES[kind]}{_BASE_SUFFIX.get(kind, '')}"

    def base_urls(self) -> dict[ProviderKind, str]:
        """``base_url`` for every kind, ready for ``build_adapters``."""
        return {kind: self.base_url(kind) for kind in ProviderKind}

    def env(self) -> dict[str, str]:
        """``{"STAGECONFIG_OPENAI_BASE_URL": …, …}`` for servers run as subprocesses."""
        return {BASE_URL_ENV[kind]: self.base_url(kind) for kind in ProviderKind}

    # --- behaviour ----------------------------------------------------------------------

    def set_models(self, kind: ProviderKind, models: list[str]) -> None:
        """The raw ids the listing offers (Gemini: bare names; the fake adds ``models/``).

        The fake always adds models the adapter must filter out (OpenAI non-chat
        models, a Gemini embedding model). Kinds with static lists raise ValueError.
        """
        if kind not in DEFAULT_MODELS:
            raise ValueError(f"{kind} has no model listing; its adapter serves a static list")
        with self._lock:
            self._models[kind] = tuple(models)

    def set_failure(self, kind: ProviderKind, failure: str | None) -> None:
        """Make every request of ``kind`` fail this way (None: behave normally)."""
        if failure is not None and not _supports(kind, failure):
            raise ValueError(
                f"{kind} cannot simulate {failure!r}; supported: {sorted(SUPPORTED_FAILURES[kind])}"
            )
        with self._lock:
            if failure is None:
                self._failures.pop(kind, None)
            else:
                self._failures[kind] = failure
        self._release_hung(kind)

    def set_retry_after(self, kind: ProviderKind, value: str | None) -> None:
        """Send ``Retry-After: value`` with every 429 of ``kind`` (None: no header)."""
        with self._lock:
            if value is None:
                self._retry_after.pop(kind, None)
            else:
                self._retry_after[kind] = value

    def count(self, kind: ProviderKind, method: str = "POST") -> int:
        """How many ``method`` requests reached ``kind`` (the generation calls are POSTs)."""
        with self._lock:
            # ==, not is: the clients' ProviderKind is another enum with the same values.
            return sum(1 for r in self._requests if r.kind == kind and r.method == method)

    def reject_key(self, key: str) -> None:
        """This exact key gets each provider's auth error; other keys keep working."""
        with self._lock:
            self._rejected.add(key)

    def fail_key(self, key: str, failure: str) -> None:
        """This exact key gets ``failure`` (from any kind that supports it); other keys
        keep working — a proxy that knows only some keys (LiteLLM without its database
        knows only its master key)."""
        if failure not in FAILURES or failure == "hang":
            raise ValueError(f"cannot fail a single key with {failure!r}")
        with self._lock:
            self._key_failures[key] = failure

    def fail_model(self, model: str, failure: str | None) -> None:
        """Generating with this model fails this way (None: it works again); listing and
        key checks are not affected, so an update to it still verifies."""
        if failure is not None and (failure not in FAILURES or failure == "hang"):
            raise ValueError(f"cannot fail a model with {failure!r}")
        with self._lock:
            if failure is None:
                self._model_failures.pop(model, None)
            else:
                self._model_failures[model] = failure

    def reset(self) -> None:
        """Back to defaults: default models, no failures, no rejected keys, no requests."""
        with self._lock:
            self._models = dict(DEFAULT_MODELS)
            self._failures.clear()
            self._rejected.clear()
            self._key_failures.clear()
            self._model_failures.clear()
            self._retry_after.clear()
            self._requests.clear()
        self._release_hung(*ProviderKind)

    @property
    def requests(self) -> list[RecordedRequest]:
        """A copy of every request received so far, oldest first."""
        with self._lock:
            return list(self._requests)

    def wait_for_requests(self, count: int, timeout: float) -> bool:
        """Block until at least ``count`` requests arrived (True) or ``timeout`` passed.

        For tests that must know a request reached the fake (e.g. is now hanging)
        before acting; from async code: ``await asyncio.to_thread(fake.wait_for_requests, 1, 5)``.
        """
        with self._received:
            return self._received.wait_for(lambda: len(self._requests) >= count, timeout)

    def clear_requests(self) -> None:
        """Forget the recorded requests."""
        with self._lock:
            self._requests.clear()

    # --- internals ------------------------------------------------------------------------

    def _release_hung(self, *kinds: ProviderKind) -> None:
        with self._lock:
            released = [self._release[kind] for kind in kinds]
            self._release.update({kind: threading.Event() for kind in kinds})
        for event in released:
            event.set()

    def _track(self, conn: socket.socket, *, open_: bool) -> None:
        with self._lock:
            if open_:
                self._connections.add(conn)
            else:
                self._connections.discard(conn)

    def _handle(self, handler: _Handler) -> _Reply | None:
        """The reply for one request, or None to hang up without answering."""
        reply = self._reply(handler)
        if reply is not None and reply.status == 429:
            with self._lock:
                retry_after = self._retry_after.get(_kind_of(handler.path))  # type: ignore[arg-type]
            if retry_after is not None:
                reply = _Reply(
                    reply.status, reply.body, reply.content_type, (("Retry-After", retry_after),)
                )
        return reply

    def _reply(self, handler: _Handler) -> _Reply | None:
        split = urlsplit(handler.path)
        kind = _kind_of(handler.path)
        path = split.path[len(PREFIXES[kind]) :] if kind else split.path
        request = RecordedRequest(
            kind=kind,
            method=handler.command,
            path=path,
            query=dict(parse_qsl(split.query)),
            headers={name.lower(): value for name, value in handler.headers.items()},
            body=handler.request_body,
        )
        with self._lock:
            self._requests.append(request)
            self._received.notify_all()
            failure = self._failures.get(kind) if kind else None
            rejected = set(self._rejected)
            key_failures = dict(self._key_failures)
            model_failure = self._model_failures.get(_generation_model(request))
            models = self._models.get(kind, ()) if kind else ()
            release = self._release[kind] if kind else None
        if kind is None:
            return _Reply(404, b"no such provider prefix", "text/plain")
        if failure == "hang" and release is not None:
            release.wait()
            return None
        provider = _PROVIDERS[kind]
        if failure == "malformed":
            return _Reply(200, _MALFORMED[kind])
        if failure is not None and failure != "invalid_key":
            return provider.failure(failure, request)
        key = provider.key_of(request)
        if failure is None and key in key_failures:
            failure = key_failures[key]
            if not _supports(kind, failure):
                failure = None
            elif failure == "malformed":
                return _Reply(200, _MALFORMED[kind])
            elif failure != "invalid_key":
                return provider.failure(failure, request)
        if failure == "invalid_key" or not key or key in rejected:
            return provider.failure("invalid_key", request)
        if model_failure is not None and model_failure in SUPPORTED_FAILURES[kind]:
            return provider.failure(model_failure, request)
        return provider.route(request, models)


def _kind_of(path: str) -> ProviderKind | None:
    where = urlsplit(path).path
    return next(
        (k for k, p in PREFIXES.items() if where == p or where.startswith(p + "/")),
        None,
    )


class _Server(ThreadingHTTPServer):
    # Daemon handler threads and no join on close: a hung handler must never keep
    # stop() (or the test process) waiting.
    daemon_threads = True
    block_on_close = False
    fake: FakeProviders


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    @property
    def fake(self) -> FakeProviders:
        return self.server.fake

    def setup(self) -> None:
        super().setup()
        self.fake._track(self.connection, open_=True)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.fake._track(self.connection, open_=False)

    request_body = b""

    def _serve(self) -> None:
        # Read the body (the generation calls need it; draining keeps keep-alive working).
        length = int(self.headers.get("Content-Length") or 0)
        self.request_body = self.rfile.read(length) if length else b""
        reply = self.fake._handle(self)
        if reply is None:
            self.close_connection = True
            return
        self.send_response(reply.status)
        self.send_header("Content-Type", reply.content_type)
        self.send_header("Content-Length", str(len(reply.body)))
        for name, value in reply.headers:
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(reply.body)

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _serve

    def log_message(self, format: str, *args: Any) -> None:
        """Silence per-request logging (pytest would show it on every failure)."""


# --- one wire format per provider ---------------------------------------------------------


def _bearer(request: RecordedRequest, *schemes: str) -> str | None:
    value = request.header("authorization") or ""
    scheme, _, token = value.partition(" ")
    return token.strip() if scheme.lower() in {s.lower() for s in schemes} and token else None


@dataclass(frozen=True, slots=True)
class _Provider:
    key_of: Callable[[RecordedRequest], str | None]
    failure: Callable[[str, RecordedRequest], _Reply]
    route: Callable[[RecordedRequest, tuple[str, ...]], _Reply]


# OpenAI -----------------------------------------------------------------------------------


def _openai_error(status: int, message: str, type_: str, code: str | None) -> _Reply:
    return _json(
        status, {"error": {"message": message, "type": type_, "param": None, "code": code}}
    )


def _openai_failure(failure: str, request: RecordedRequest) -> _Reply:
    key = _bearer(request, "Bearer") or ""
    if failure == "invalid_key":
        # The real API masks the key; the fake echoes it whole so that tests prove
        # the adapter never passes it on.
        return _openai_error(
            401, f"Incorrect API key provided: {key}.", "invalid_request_error", "invalid_api_key"
        )
    if failure == "permission":
        return _openai_error(
            403,
            "You have insufficient permissions for this operation. Missing scopes: api.model.read.",
            "invalid_request_error",
            None,
        )
    if failure == "region":
        return _openai_error(
            403,
            "Country, region, or territory not supported",
            "request_forbidden",
            "unsupported_country_region_territory",
        )
    if failure == "quota":
        return _openai_error(
            429,
            "You exceeded your current quota, please check your plan and billing details.",
            "insufficient_quota",
            "insufficient_quota",
        )
    if failure == "rate_limit":
        return _openai_error(
            429, "Rate limit reached for requests per min (RPM).", "requests", "rate_limit_exceeded"
        )
    if failure == "listing_unavailable":
        return _openai_error(404, "Invalid URL (GET /v1/models)", "invalid_request_error", None)
    if failure == "no_connected_db":
        # LiteLLM's user_api_key_auth without DATABASE_URL, for any key but the master
        # key (BerriAI/litellm#20837 quotes the body; "code" is a string there).
        return _openai_error(400, "No connected db.", "no_db_connection", "400")
    return _openai_error(
        500, "The server had an error while processing your request.", "server_error", None
    )


def _generated_text(model: str, prompt: str) -> str:
    return f"A poem by {model}:\n{prompt.strip()[:80]} —\nthe sea keeps every answer."


def _chat_completion(request: RecordedRequest, models: tuple[str, ...], model: str) -> _Reply:
    """An OpenAI-style chat completion (also YandexGPT's compatible API)."""
    try:
        payload = json.loads(request.body or b"{}")
        prompt = str(payload["messages"][-1]["content"])
    except (ValueError, KeyError, IndexError, TypeError):
        return _openai_error(400, "Invalid request body", "invalid_request_error", None)
    if model not in models:
        return _openai_error(
            404,
            f"The model `{payload.get('model')}` does not exist or you do not have access to it.",
            "invalid_request_error",
            "model_not_found",
        )
    message = {"role": "assistant", "content": _generated_text(model, prompt)}
    return _json(
        200,
        {
            "id": "chatcmpl-fake",
            "object": "chat.completion",
            "created": OPENAI_CREATED_BASE,
            "model": str(payload.get("model")),
            "choices": [{"index": 0, "message": message, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
        },
    )


def _generation_model(request: RecordedRequest) -> str:
    """The model a generation call asks for (OpenAI-style body, Gemini path); empty for
    any other call."""
    if request.method != "POST":
        return ""
    if request.path.endswith("/chat/completions"):
        return _requested_model(request)
    if request.path.endswith(":generateContent") and "/models/" in request.path:
        return request.path.split("/models/", 1)[1].removesuffix(":generateContent")
    return ""


def _requested_model(request: RecordedRequest) -> str:
    try:
        return str(json.loads(request.body or b"{}").get("model", ""))
    except (ValueError, AttributeError):
        return ""


def _openai_route(request: RecordedRequest, models: tuple[str, ...]) -> _Reply:
    if request.method == "POST" and request.path == "/v1/chat/completions":
        return _chat_completion(request, models, _requested_model(request))
    if request.method != "GET" or request.path != "/v1/models":
        return _openai_error(
            404, f"Invalid URL ({request.method} {request.path})", "invalid_request_error", None
        )
    # Chat models get increasing `created` in the order given (the last is newest);
    # the non-chat ones are older. The listing itself comes sorted by id, as
    # arbitrary as the real one's.
    entries = [
        {
            "id": m,
            "object": "model",
            "created": OPENAI_CREATED_BASE - 1000 - i,
            "owned_by": "system",
        }
        for i, m in enumerate(OPENAI_NON_CHAT_MODELS)
    ]
    entries += [
        {
            "id": m,
            "object": "model",
            "created": OPENAI_CREATED_BASE + i * 86_400,
            "owned_by": "system",
        }
        for i, m in enumerate(models)
    ]
    entries.sort(key=lambda e: str(e["id"]))
    return _json(200, {"object": "list", "data": entries})


# Gemini -----------------------------------------------------------------------------------


def _gemini_error(
    code: int, status: str, message: str, details: list[dict[str, Any]] | None = None
) -> _Reply:
    error: dict[str, Any] = {"code": code, "message": message, "status": status}
    if details is not None:
        error["details"] = details
    return _json(code, {"error": error})


def _gemini_quota(quota_id: str) -> list[dict[str, Any]]:
    return [
        {
            "@type": "type.googleapis.com/google.rpc.QuotaFailure",
            "violations": [
                {
                    "quotaMetric": (
                        "generativelanguage.googleapis.com/generate_content_free_tier_requests"
                    ),
                    "quotaId": quota_id,
                    "quotaDimensions": {"location": "global", "model": "gemini-2.5-pro"},
                    "quotaValue": "50",
                }
            ],
        },
        {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "27s"},
    ]


def _gemini_failure(failure: str, request: RecordedRequest) -> _Reply:
    if failure == "invalid_key":
        return _gemini_error(
            400,
            "INVALID_ARGUMENT",
            "API key not valid. Please pass a valid API key.",
            [
                {
                    "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                    "reason": "API_KEY_INVALID",
                    "domain": "googleapis.com",
                    "metadata": {"service": "generativelanguage.googleapis.com"},
                }
            ],
        )
    if failure == "permission":
        return _gemini_error(
            403,
            "PERMISSION_DENIED",
            "Generative Language API has not been used in this project before or it is disabled.",
            [{"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "SERVICE_DISABLED"}],
        )
    if failure == "region":
        return _gemini_error(
            400, "FAILED_PRECONDITION", "User location is not supported for the API use."
        )
    quota_message = "You exceeded your current quota, please check your plan and billing details."
    if failure == "quota":
        return _gemini_error(
            429,
            "RESOURCE_EXHAUSTED",
            quota_message,
            _gemini_quota("GenerateRequestsPerDayPerProjectPerModel-FreeTier"),
        )
    if failure == "rate_limit":
        return _gemini_error(
            429,
            "RESOURCE_EXHAUSTED",
            quota_message,
            _gemini_quota("GenerateRequestsPerMinutePerProjectPerModel-FreeTier"),
        )
    if failure == "listing_unavailable":
        return _gemini_error(404, "NOT_FOUND", f"Method not found: {request.path}")
    return _gemini_error(500, "INTERNAL", "An internal error has occurred. Please retry.")


def _gemini_model(name: str, methods: list[str]) -> dict[str, Any]:
    return {
        "name": f"models/{name}",
        "version": "001",
        "displayName": name.replace("-", " ").title(),
        "description": f"Fake {name}",
        "inputTokenLimit": 1_048_576,
        "outputTokenLimit": 65_536,
        "supportedGenerationMethods": methods,
    }


def _gemini_generate(request: RecordedRequest, models: tuple[str, ...]) -> _Reply:
    model = request.path.split("/models/", 1)[1].removesuffix(":generateContent")
    if model not in models:
        return _gemini_error(404, "NOT_FOUND", f"models/{model} is not found for API version v1")
    try:
        payload = json.loads(request.body or b"{}")
        prompt = str(payload["contents"][-1]["parts"][0]["text"])
    except (ValueError, KeyError, IndexError, TypeError):
        return _gemini_error(400, "INVALID_ARGUMENT", "Invalid JSON payload received.")
    return _json(
        200,
        {
            "candidates": [
                {
                    "content": {
                        "role": "model",
                        "parts": [{"text": _generated_text(model, prompt)}],
                    },
                    "finishReason": "STOP",
                    "index": 0,
                }
            ],
            "modelVersion": model,
        },
    )


def _gemini_route(request: RecordedRequest, models: tuple[str, ...]) -> _Reply:
    if (
        request.method == "POST"
        and request.path.startswith(("/v1/models/", "/v1beta/models/"))
        and request.path.endswith(":generateContent")
    ):
        return _gemini_generate(request, models)
    if request.method != "GET" or request.path not in ("/v1/models", "/v1beta/models"):
        return _gemini_error(404, "NOT_FOUND", f"Method not found: {request.path}")
    entries = [_gemini_model(GEMINI_NON_GENERATE_MODEL, ["embedContent", "countTextTokens"])]
    entries += [
        _gemini_model(m, ["generateContent", "countTokens", "createCachedContent"]) for m in models
    ]
    try:
        asked = int(request.query.get("pageSize") or GEMINI_MAX_PAGE_SIZE)
        start = int(request.query.get("pageToken") or 0)
    except ValueError:
        return _gemini_error(400, "INVALID_ARGUMENT", "Invalid page token or page size.")
    size = max(1, min(asked, GEMINI_MAX_PAGE_SIZE))
    page: dict[str, Any] = {"models": entries[start : start + size]}
    if start + size < len(entries):
        page["nextPageToken"] = str(start + size)
    return _json(200, page)


def _gemini_key(request: RecordedRequest) -> str | None:
    return request.header("x-goog-api-key") or request.query.get("key")


# YandexGPT --------------------------------------------------------------------------------


def _yandex_error(http_code: int, grpc_code: int, message: str, http_status: str) -> _Reply:
    return _json(
        http_code,
        {
            "error": {
                "grpcCode": grpc_code,
                "httpCode": http_code,
                "message": message,
                "httpStatus": http_status,
                "details": [],
            }
        },
    )


def _yandex_failure(failure: str, request: RecordedRequest) -> _Reply:
    key = _bearer(request, "Bearer", "Api-Key") or ""
    folder = request.header("openai-project") or ""
    if failure == "invalid_key":
        return _yandex_error(401, 16, f"Unknown api key '{key}'", "Unauthorized")
    if failure == "permission":
        return _yandex_error(
            403,
            7,
            f"Permission to [resource-manager.folder {folder}] denied",
            "Forbidden",
        )
    if failure == "quota":
        return _yandex_error(
            429,
            8,
            "ai.languageModels.requestsPerSecond.rate quota limit exceed: allowed 10 requests",
            "Too Many Requests",
        )
    if failure == "rate_limit":
        return _yandex_error(429, 8, "Too many requests, try again later", "Too Many Requests")
    if failure == "listing_unavailable":
        return _yandex_error(404, 5, "Not found", "Not Found")
    if failure == "not_implemented":
        return _yandex_error(501, 12, "Method is not implemented", "Not Implemented")
    return _yandex_error(500, 13, "Internal server error", "Internal Server Error")


def _yandex_route(request: RecordedRequest, models: tuple[str, ...]) -> _Reply:
    if request.method == "POST" and request.path == "/v1/chat/completions":
        # Model URIs carry the folder: gpt://<folder_id>/yandexgpt/latest.
        uri = _requested_model(request)
        folder = request.header("openai-project") or ""
        return _chat_completion(request, models, uri.removeprefix(f"gpt://{folder}/"))
    if request.method != "GET" or request.path != "/v1/models":
        return _yandex_error(404, 5, "Not found", "Not Found")
    entries = [
        {"id": m, "object": "model", "created": OPENAI_CREATED_BASE, "owned_by": "yandex"}
        for m in models
    ]
    return _json(200, {"object": "list", "data": entries})


# Suno (sunoapi.org) -----------------------------------------------------------------------


def _suno(http_status: int, code: int, msg: str) -> _Reply:
    return _json(http_status, {"code": code, "msg": msg, "data": None})


def _suno_failure(failure: str, request: RecordedRequest) -> _Reply:
    key = _bearer(request, "Bearer") or ""
    if failure == "invalid_key":
        return _suno(401, 401, f"Unauthorized: invalid api key {key}")
    if failure == "body_error_401":
        return _suno(200, 401, f"Unauthorized: invalid api key {key}")
    if failure in ("quota", "body_error_429"):
        # sunoapi.org's 429 means insufficient credits (its 430 is the rate limit).
        return _suno(429 if failure == "quota" else 200, 429, "Insufficient credits")
    if failure == "rate_limit":
        return _suno(200, 430, "Your call frequency is too high. Please try again later.")
    if failure == "body_error_455":
        return _suno(200, 455, "System maintenance, please try again later")
    return _suno(500, 500, "Server exception")


def _suno_route(request: RecordedRequest, models: tuple[str, ...]) -> _Reply:
    if request.method != "GET" or request.path != "/api/v1/generate/credit":
        return _suno(404, 404, "Request method or path error")
    return _json(200, {"code": 200, "msg": "success", "data": 100})


# Pika (fal.ai) ----------------------------------------------------------------------------


def _pika_failure(failure: str, request: RecordedRequest) -> _Reply:
    if failure == "invalid_key":
        return _json(401, {"detail": "No user found for Key ID and Secret"})
    if failure == "permission":
        return _json(403, {"detail": "User is locked. Reason: Admin lock. Please contact support."})
    if failure == "quota":
        return _json(
            403,
            {
                "detail": (
                    "User is locked. Reason: Exhausted balance."
                    " Top up your balance at fal.ai/dashboard/billing."
                )
            },
        )
    if failure == "rate_limit":
        return _json(429, {"detail": "Rate limit exceeded"})
    return _json(500, {"detail": "Internal Server Error"})


def _pika_route(request: RecordedRequest, models: tuple[str, ...]) -> _Reply:
    if request.method != "GET" or request.path != "/v1/models/pricing":
        return _json(404, {"detail": "Not Found"})
    endpoint_id = request.query.get("endpoint_id", "")
    price = {"endpoint_id": endpoint_id, "unit_price": 0.2, "unit": "video", "currency": "USD"}
    return _json(200, {"prices": [price], "next_cursor": None, "has_more": False})


# SpeechKit --------------------------------------------------------------------------------


def _speechkit_failure(failure: str, request: RecordedRequest) -> _Reply:
    # Yandex Cloud's error shape (as YandexGPT's above): out of quota is 429 with gRPC
    # code 8 RESOURCE_EXHAUSTED.
    if failure == "quota":
        return _yandex_error(
            429,
            8,
            "Quota exceeded: the billing account's credits are exhausted",
            "Too Many Requests",
        )
    if failure == "rate_limit":
        return _yandex_error(429, 8, "Too many requests, try again later", "Too Many Requests")
    if failure == "server_error":
        return _yandex_error(500, 13, "Internal server error", "Internal Server Error")
    return _json(401, {"error_code": "UNAUTHORIZED", "error_message": "Unknown api key"})


def _speechkit_route(request: RecordedRequest, models: tuple[str, ...]) -> _Reply:
    # The adapter never calls SpeechKit; workers synthesize speech.
    if request.method == "POST" and request.path == "/tts/v3/utteranceSynthesis":
        try:
            payload = json.loads(request.body or b"{}")
            voice = str(payload["hints"][0]["voice"])
            text = str(payload["text"])
        except (ValueError, KeyError, IndexError, TypeError):
            return _yandex_error(400, 3, "Invalid request body", "Bad Request")
        audio = base64.b64encode(f"MP3 {voice}: {text[:80]}".encode()).decode()
        line = json.dumps({"result": {"audioChunk": {"data": audio}}}) + "\n"
        return _Reply(200, line.encode())
    return _json(404, {"error_code": "NOT_FOUND", "error_message": "Not found"})


_PROVIDERS: Mapping[ProviderKind, _Provider] = {
    ProviderKind.OPENAI: _Provider(
        key_of=lambda r: _bearer(r, "Bearer"), failure=_openai_failure, route=_openai_route
    ),
    ProviderKind.GEMINI: _Provider(
        key_of=_gemini_key, failure=_gemini_failure, route=_gemini_route
    ),
    ProviderKind.YANDEX_GPT: _Provider(
        key_of=lambda r: _bearer(r, "Bearer", "Api-Key"),
        failure=_yandex_failure,
        route=_yandex_route,
    ),
    ProviderKind.SPEECHKIT: _Provider(
        key_of=lambda r: _bearer(r, "Api-Key", "Bearer"),
        failure=_speechkit_failure,
        route=_speechkit_route,
    ),
    ProviderKind.SUNO: _Provider(
        key_of=lambda r: _bearer(r, "Bearer"), failure=_suno_failure, route=_suno_route
    ),
    ProviderKind.PIKA: _Provider(
        key_of=lambda r: _bearer(r, "Key"), failure=_pika_failure, route=_pika_route
    ),
}


__all__ = [
    "DEFAULT_MODELS",
    "FAILURES",
    "GEMINI_MAX_PAGE_SIZE",
    "GEMINI_NON_GENERATE_MODEL",
    "OPENAI_NON_CHAT_MODELS",
    "PREFIXES",
    "SPEECHKIT_SYNTHESIS_FAILURES",
    "SUPPORTED_FAILURES",
    "FakeProviders",
    "RecordedRequest",
]
