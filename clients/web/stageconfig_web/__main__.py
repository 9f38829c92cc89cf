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
from pathlib import Path

import uvicorn

from stageconfig_web.app import WebSettings, create_app

TARGET_ENV = "STAGECONFIG_TARGET"
LISTEN_ENV = "STAGECONFIG_WEB_LISTEN"
SECURE_COOKIES_ENV = "STAGECONFIG_WEB_SECURE_COOKIES"
DEFAULT_TARGET = "127.0.0.1:50051"
DEFAULT_LISTEN = "127.0.0.1:8080"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="admin-web", description="Serve the stageconfig admin page."
    )
    parser.add_argument(
        "--target",
        default=os.environ.get(TARGET_ENV, DEFAULT_TARGET),
        help=f"stageconfig server host:port (env {TARGET_ENV}; default {DEFAULT_TARGET})",
    )
    parser.add_argument(
        "--listen",
        default=os.environ.get(LISTEN_ENV, DEFAULT_LISTEN),
        help=f"address of the page (env {LISTEN_ENV}; default {DEFAULT_LISTEN})",
    )
    parser.add_argument("--tls", action="store_true", help="TLS to the server (system roots)")
    parser.add_argument("--tls-ca", type=Path, metavar="PEM", help="CA bundle for the server")
    parser.add_argument("--tls-cert", type=Path, metavar="PEM", help="client certificate (mTLS)")
    parser.add_argument("--tls-key", type=Path, metavar="PEM", help="client private key (mTLS)")
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


def _read(path: Path | None) -> bytes | None:
    if path is None:
        return None
    try:
        return path.read_bytes()
    except OSError as error:
        raise SystemExit(f"admin-web: cannot read {path}: {error.strerror}") from error


def main(argv: Sequence[str] | None = None) -> int:
    """Parse arguments, bind, serve until SIGINT/SIGTERM."""
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    settings = WebSettings(
        target=args.target,
        tls=args.tls,
        root_certificates=_read(args.tls_ca),
        client_certificate=_read(args.tls_cert),
        client_key=_read(args.tls_key),
        secure_cookies=args.secure_cookies,
    )
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
