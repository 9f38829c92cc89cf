"""How the admin tools reach the server: ``--target`` and the ``--tls``/``--tls-ca``/
``--tls-cert``/``--tls-key`` flags, and the ``TlsConfig`` they mean. ``stageconfigctl``
and the web page (``admin-web``) share them."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from stageconfig.tls import TlsConfig

DEFAULT_TARGET = "127.0.0.1:50051"
TARGET_ENV = "STAGECONFIG_TARGET"


def add_server_flags(parser: argparse.ArgumentParser) -> None:
    """Add ``--target`` and the four TLS flags (towards the stageconfig server)."""
    parser.add_argument(
        "--target",
        default=os.environ.get(TARGET_ENV, DEFAULT_TARGET),
        help=f"stageconfig server host:port (env {TARGET_ENV}; default {DEFAULT_TARGET})",
    )
    parser.add_argument("--tls", action="store_true", help="use TLS (system roots by default)")
    parser.add_argument("--tls-ca", type=Path, metavar="PEM", help="CA bundle to verify the server")
    parser.add_argument("--tls-cert", type=Path, metavar="PEM", help="client certificate (mTLS)")
    parser.add_argument("--tls-key", type=Path, metavar="PEM", help="client private key (mTLS)")


def tls_from_flags(args: argparse.Namespace) -> TlsConfig | None:
    """The TlsConfig the flags ask for; None (plaintext) when none is given. Any of the
    files implies ``--tls``.

    Raises ValueError with a message for the person at the terminal when a file cannot
    be read or a certificate comes without its key.
    """
    files = (args.tls_ca, args.tls_cert, args.tls_key)
    if not args.tls and all(path is None for path in files):
        return None
    if (args.tls_cert is None) != (args.tls_key is None):
        raise ValueError("--tls-cert and --tls-key go together (mTLS)")
    try:
        return TlsConfig.from_files(*files)
    except OSError as error:
        raise ValueError(f"cannot read {error.filename}: {error.strerror}") from error
