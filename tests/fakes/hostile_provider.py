"""A provider that attacks the server: a real local HTTP server with a second origin.

Usage::

    with HostileProvider() as hostile:
        hostile.behave("redirect")                  # every answer is a 302 elsewhere
        env = hostile.env()                         # STAGECONFIG_<KIND>_BASE_URL for all
        ...
        hostile.elsewhere_requests                  # what the *other* origin received

Two ``ThreadingHTTPServer`` on 127.0.0.1 (port 0 each): ``main`` is the provider the
server is pointed at, ``elsewhere`` another origin (another port) that records every
request it receives, so a test can prove that no header ever reached it. ``main``
speaks the listing formats of OpenAI/YandexGPT (``/openai/v1/models``,
``/yandex-gpt/v1/models``), Gemini (``/gemini/v1/models``, paged) and the key checks of
sunoapi (``/suno/api/v1/generate/credit``) and fal (``/pika/v1/models/pricing``).

Behaviours (``behave``; one at a time, for every kind)::

    ok            a small good list (``GOOD_MODELS``)
    models        the list given to ``behave(..., models=[...])`` (huge lists, ids with
                  control characters, ids over 256 characters)
    huge_id       one model whose id is 10,000,004 characters (a ~10 MB body)
    huge_body     a 64 MB body of JSON whitespace, streamed
    echo          401 whose message carries ``echo`` (a key in an altered form)
    redirect      302 to the same path on the ``elsewhere`` origin
    drip          200 announcing 1 MB, then one byte every 50 ms
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Iterator, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any
from urllib.parse import urlsplit

from stageconfig_server.domain import ProviderKind
from stageconfig_server.providers.registry import BASE_URL_ENV

GOOD_MODELS: tuple[str, ...] = ("gpt-4o", "gpt-4o-mini")
"""What ``ok`` lists (OpenAI chat names; Gemini gets ``gemini-2.5-*``)."""

GOOD_GEMINI: tuple[str, ...] = ("gemini-2.5-flash", "gemini-2.5-pro")

_PREFIX = {
    ProviderKind.OPENAI: "/openai/v1",
    ProviderKind.YANDEX_GPT: "/yandex-gpt/v1",
    ProviderKind.GEMINI: "/gemini",
    ProviderKind.SUNO: "/suno",
    ProviderKind.PIKA: "/pika",
    ProviderKind.SPEECHKIT: "/speechkit",
}

HUGE_ID_CHARS = 10_000_004


class HostileProvider:
    """The two servers and the behaviour they share (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._behaviour = "ok"
        self._models: tuple[str, ...] = ()
        self._echo = ""
        self._bodies: dict[bool, bytes] = {}
        self.main_requests: list[tuple[str, dict[str, str]]] = []
        """(path, headers) of every request the provider received."""
        self.elsewhere_requests: list[tuple[str, dict[str, str]]] = []
        """(path, headers) of every request the other origin received."""
        self._main = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self, main=True))
        self._elsewhere = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self, main=False))
        for server in (self._main, self._elsewhere):
            server.daemon_threads = True
        self._threads = [
            threading.Thread(target=s.serve_forever, daemon=True)
            for s in (self._main, self._elsewhere)
        ]

    # -- lifecycle --------------------------------------------------------------------

    def __enter__(self) -> HostileProvider:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        with self._lock:
            self._behaviour = "ok"  # a dripping handler stops at its next byte
        for server in (self._main, self._elsewhere):
            server.shutdown()
            server.server_close()

    # -- configuration ----------------------------------------------------------------

    def behave(self, behaviour: str, *, models: Sequence[str] = (), echo: str = "") -> None:
        """Answer every later request with ``behaviour`` (see the module docstring)."""
        if behaviour == "huge_id":
            models = ["gpt-" + "x" * (HUGE_ID_CHARS - 4)]
        # Rendered here, once: a 100,000-model body built per request would hold this
        # process's GIL (the server under test shares it) and skew the latency figures.
        bodies = {
            gemini: json.dumps(
                _listing(ProviderKind.GEMINI if gemini else ProviderKind.OPENAI, models),
                separators=(",", ":"),
            ).encode()
            for gemini in (False, True)
        }
        with self._lock:
            self._behaviour, self._models, self._echo = behaviour, tuple(models), echo
            self._bodies = bodies

    def base_url(self, kind: ProviderKind) -> str:
        """The base URL the server's adapter for ``kind`` is given."""
        return f"http://127.0.0.1:{self._main.server_address[1]}{_PREFIX[kind]}"

    @property
    def elsewhere_origin(self) -> str:
        """The other origin (scheme, host, port)."""
        return f"http://127.0.0.1:{self._elsewhere.server_address[1]}"

    def env(self) -> dict[str, str]:
        """``STAGECONFIG_<KIND>_BASE_URL`` for every kind, pointing here."""
        return {BASE_URL_ENV[kind]: self.base_url(kind) for kind in ProviderKind}

    def base_urls(self) -> dict[ProviderKind, str | None]:
        """For ``providers.build_adapters``."""
        return {kind: self.base_url(kind) for kind in ProviderKind}

    def provider_calls(self, path_part: str = "models") -> int:
        """How many requests whose path contains ``path_part`` the provider received."""
        with self._lock:
            return sum(1 for path, _ in self.main_requests if path_part in path)

    def state(self) -> tuple[str, tuple[str, ...], str]:
        """The current behaviour, models and echo."""
        with self._lock:
            return self._behaviour, self._models, self._echo

    def listing_body(self, kind: ProviderKind) -> bytes:
        """The pre-rendered listing of ``models`` / ``huge_id`` in ``kind``'s format."""
        with self._lock:
            return self._bodies[kind is ProviderKind.GEMINI]

    def record(self, main: bool, path: str, headers: dict[str, str]) -> None:
        """Remember one request."""
        with self._lock:
            (self.main_requests if main else self.elsewhere_requests).append((path, headers))


# -- answers ------------------------------------------------------------------------------


def _kind_of(path: str) -> ProviderKind | None:
    for kind, prefix in _PREFIX.items():
        if path.startswith(prefix + "/"):
            return kind
    return None


def _listing(kind: ProviderKind, models: Sequence[str]) -> dict[str, Any]:
    if kind is ProviderKind.GEMINI:
        return {
            "models": [
                {"name": f"models/{m}", "supportedGenerationMethods": ["generateContent"]}
                for m in models
            ]
        }
    return {
        "object": "list",
        "data": [{"id": m, "object": "model", "created": 1, "owned_by": "x"} for m in models],
    }


def _good(kind: ProviderKind) -> dict[str, Any]:
    if kind is ProviderKind.SUNO:
        return {"code": 200, "msg": "success", "data": 100}
    if kind is ProviderKind.PIKA:
        return {"prices": []}
    return _listing(kind, GOOD_GEMINI if kind is ProviderKind.GEMINI else GOOD_MODELS)


def _echo_error(kind: ProviderKind, said: str) -> tuple[int, dict[str, Any]]:
    if kind is ProviderKind.GEMINI:
        return 400, {
            "error": {
                "code": 400,
                "message": said,
                "status": "INVALID_ARGUMENT",
                "details": [
                    {
                        "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                        "reason": "API_KEY_INVALID",
                    }
                ],
            }
        }
    if kind is ProviderKind.SUNO:
        return 200, {"code": 401, "msg": said}
    if kind is ProviderKind.PIKA:
        return 401, {"detail": said}
    return 401, {"error": {"message": said, "type": "invalid_request_error", "code": None}}


def _handler(hostile: HostileProvider, *, main: bool) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            pass  # quiet: the tests read ``main_requests``

        def do_GET(self) -> None:
            headers = {k.lower(): v for k, v in self.headers.items()}
            hostile.record(main, self.path, headers)
            if not main:
                self._json(200, _good(ProviderKind.OPENAI))
                return
            path = urlsplit(self.path).path
            kind = _kind_of(path)
            if kind is None:
                self._json(404, {"error": {"message": "not found"}})
                return
            behaviour, _models, echo = hostile.state()
            if behaviour == "redirect":
                self.send_response(302)
                self.send_header("Location", hostile.elsewhere_origin + self.path)
                self.send_header("Content-Length", "0")
                self.end_headers()
            elif behaviour == "echo":
                self._json(*_echo_error(kind, f"Unknown api key '{echo}'"))
            elif behaviour in ("models", "huge_id"):
                self._stream(hostile.listing_body(kind))
            elif behaviour == "huge_body":
                self._until_closed(b"{" + b" " * (64 * 1024 * 1024) + b"}")
            elif behaviour == "drip":
                self._drip()
            else:
                self._json(200, _good(kind))

        def _json(self, status: int, body: dict[str, Any]) -> None:
            data = json.dumps(body, separators=(",", ":")).encode()
            self._stream(data, status=status)

        def _stream(self, data: bytes, *, status: int = 200, chunk: int = 1 << 16) -> None:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            with contextlib.suppress(OSError):  # the client stopped reading: expected
                for part in _chunks(data, chunk):
                    self.wfile.write(part)

        def _until_closed(self, data: bytes) -> None:
            # No Content-Length: the body ends when the connection closes, so only a
            # cap on the bytes read (not the announced length) can stop it.
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Connection", "close")
            self.end_headers()
            with contextlib.suppress(OSError):
                for part in _chunks(data, 1 << 20):
                    self.wfile.write(part)
            self.close_connection = True

        def _drip(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(1 << 20))
            self.end_headers()
            with contextlib.suppress(OSError):
                self.wfile.write(b"{")
                self.wfile.flush()
                deadline = time.monotonic() + 60
                while hostile.state()[0] == "drip" and time.monotonic() < deadline:
                    self.wfile.write(b" ")
                    self.wfile.flush()
                    time.sleep(0.05)
            self.close_connection = True

    return Handler


def _chunks(data: bytes, size: int) -> Iterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


__all__ = ["GOOD_GEMINI", "GOOD_MODELS", "HUGE_ID_CHARS", "HostileProvider"]
