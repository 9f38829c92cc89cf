"""``python -m stageconfig_web`` (what ``scripts/admin-web`` runs): serve the admin page.

    python -m stageconfig_web [--target HOST:PORT] [--listen HOST:PORT] [--tls …]

Prints ``stageconfig-web listening on http://HOST:PORT`` once the socket is bound
(``--listen 127.0.0.1:0`` picks a free port). People log in with their own admin token.
"""

from __future__ import annotations

import argparse
import logging
import os
import socket
import sys
from collections.abc import Sequence

import uvicorn

from stageconfig.ctl.server_flags import add_server_flags, tls_from_flags
from stageconfig_web.app import create_app
from stageconfig_web.settings import WebSettings

LISTEN_ENV = "STAGECONFIG_WEB_LISTEN"
SECURE_COOKIES_ENV = "STAGECONFIG_WEB_SECURE_COOKIES"
DEFAULT_LISTEN = "127.0.0.1:8080"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="admin-web", description="Serve the stageconfig admin page."
    )
    add_server_flags(parser)
    parser.add_argument(
        "--listen",
        default=os.environ.get(LISTEN_ENV, DEFAULT_LISTEN),
        help=f"address of the page (env {LISTEN_ENV}; default {DEFAULT_LISTEN})",
    )
    parser.add_argument(
        "--secure-cookies",
        action="store_true",
        default=os.environ.get(SECURE_COOKIES_ENV, "") not in ("", "0", "false"),
        help=f"mark the session cookie Secure: the page is served over HTTPS "
        f"(env {SECURE_COOKIES_ENV}=1)",
    )
    return parser


def _split_listen(listen: str) -> tuple[str, int]:
    host, sep, port = listen.rpartition(":")
    if not sep or not port.isdigit():
        raise SystemExit(f"admin-web: --listen wants HOST:PORT, got {listen!r}")
    return host.strip("[]") or "127.0.0.1", int(port)


def main(argv: Sequence[str] | None = None) -> int:
    """Parse arguments, bind, serve until SIGINT/SIGTERM."""
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        tls = tls_from_flags(args)
    except ValueError as error:
        raise SystemExit(f"admin-web: {error}") from error
    settings = WebSettings(target=args.target, tls=tls, secure_cookies=args.secure_cookies)
    host, port = _split_listen(args.listen)
    # Bind here (not in uvicorn) to learn the port when it is 0 and print it.
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    # Listen before announcing: a bound socket that is not listening yet refuses
    # connections, and whoever reads the banner connects at once.
    sock.listen(128)
    bound_port = sock.getsockname()[1]
    shown = f"[{host}]" if family == socket.AF_INET6 else host
    print(
        f"stageconfig-web listening on http://{shown}:{bound_port} (server {args.target})",
        flush=True,
    )
    config = uvicorn.Config(
        create_app(settings),
        log_level="info",
        access_log=False,  # URLs carry nothing secret, but the log stays about events
        proxy_headers=False,
    )
    uvicorn.Server(config).run(sockets=[sock])
    return 0


if __name__ == "__main__":
    sys.exit(main())
