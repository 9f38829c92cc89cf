"""How the server is exposed: TLS / mTLS credentials, tokens, and the start-up rules.

Safe defaults, checked before anything binds or opens the database:

- no tokens → authentication is off; allowed only on a loopback address, with a warning;
- a non-loopback address needs tokens *and* TLS, or the server refuses to start
  (UnsafeConfiguration) unless ``STAGECONFIG_INSECURE=1`` accepts the risk explicitly;
- ``STAGECONFIG_TLS_CERT`` + ``_KEY`` turn TLS on; ``_CLIENT_CA`` also requires every
  client to present a certificate signed by that CA (mTLS). Files are checked here
  (readable PEM, key matching certificate) so a mistake is a clear message at start,
  not a handshake failure on the first call.
"""

from __future__ import annotations

import ipaddress
import logging
import stat
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import grpc
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from stageconfig_server.errors import UnsafeConfiguration
from stageconfig_server.rpc.auth import AuthInterceptor, TokenTable
from stageconfig_server.rpc.identity import ANONYMOUS, Caller
from stageconfig_server.rpc.refusals import RefusalLog
from stageconfig_server.settings import Settings

log = logging.getLogger(__name__)

CallerResolver = Callable[[grpc.aio.ServicerContext[Any, Any]], Caller]


def is_loopback(address: str) -> bool:
    """Whether a listen address (``host:port``, ``[v6]:port``, ``unix:…``) is reachable
    from this machine only. Unknown host names count as not loopback."""
    if address.startswith(("unix:", "unix-abstract:")):
        return True
    host = address
    if host.startswith("["):
        host = host[1:].split("]", 1)[0]
    elif host.count(":") == 1:
        host = host.rsplit(":", 1)[0]
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # "" (every interface) or a host name that may resolve anywhere


def _read(path: Path, variable: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise UnsafeConfiguration(
            f"{variable} {path} cannot be read: {exc.strerror or exc.__class__.__name__}"
        ) from exc


def _certificates(pem: bytes, path: Path, variable: str) -> list[x509.Certificate]:
    try:
        certificates = x509.load_pem_x509_certificates(pem)
    except ValueError as exc:
        raise UnsafeConfiguration(
            f"{variable} {path} is not a PEM certificate (chain): {exc}"
        ) from exc
    return certificates


def _public_der(key: Any) -> bytes:
    result: bytes = key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return result


def server_credentials(
    cert: Path | None, key: Path | None, client_ca: Path | None
) -> grpc.ServerCredentials | None:
    """TLS credentials from the PEM files (None: plaintext); a client CA means mTLS.

    Raises UnsafeConfiguration naming the variable when a file is missing, unreadable,
    not PEM, an encrypted key, or a key that does not belong to the certificate.
    """
    if cert is None and key is None:
        if client_ca is not None:
            raise UnsafeConfiguration(
                "STAGECONFIG_TLS_CLIENT_CA needs STAGECONFIG_TLS_CERT and STAGECONFIG_TLS_KEY: "
                "mutual TLS is TLS plus client certificates"
            )
        return None
    if cert is None or key is None:
        raise UnsafeConfiguration(
            "STAGECONFIG_TLS_CERT and STAGECONFIG_TLS_KEY go together: set both"
        )
    cert_pem = _read(cert, "STAGECONFIG_TLS_CERT")
    key_pem = _read(key, "STAGECONFIG_TLS_KEY")
    chain = _certificates(cert_pem, cert, "STAGECONFIG_TLS_CERT")
    try:
        private_key = serialization.load_pem_private_key(key_pem, password=None)
    except (ValueError, TypeError) as exc:
        # TypeError: the key is encrypted. Never echo the file: it is a private key.
        raise UnsafeConfiguration(
            f"STAGECONFIG_TLS_KEY {key} is not an unencrypted PEM private key"
        ) from exc
    if _public_der(private_key.public_key()) != _public_der(chain[0].public_key()):
        raise UnsafeConfiguration(
            f"STAGECONFIG_TLS_KEY {key} is not the private key of the certificate in "
            f"STAGECONFIG_TLS_CERT {cert}"
        )
    if chain[0].not_valid_after_utc < datetime.now(UTC):
        log.warning(
            "the TLS certificate %s expired on %s: clients will refuse it",
            cert,
            chain[0].not_valid_after_utc.date(),
        )
    if key.stat().st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        log.warning("STAGECONFIG_TLS_KEY %s is readable by other users: chmod 600 it", key)
    ca_pem: bytes | None = None
    if client_ca is not None:
        ca_pem = _read(client_ca, "STAGECONFIG_TLS_CLIENT_CA")
        _certificates(ca_pem, client_ca, "STAGECONFIG_TLS_CLIENT_CA")
    return grpc.ssl_server_credentials(
        [(key_pem, cert_pem)],
        root_certificates=ca_pem,
        require_client_auth=ca_pem is not None,
    )


def _anonymous(_context: grpc.aio.ServicerContext[Any, Any]) -> Caller:
    return ANONYMOUS


@dataclass(frozen=True)
class ServerSecurity:
    """Everything the server needs to enforce the security settings."""

    tokens: TokenTable
    credentials: grpc.ServerCredentials | None
    """TLS credentials for ``add_secure_port``; None serves plaintext."""
    mutual_tls: bool
    interceptors: tuple[grpc.aio.ServerInterceptor[Any, Any], ...]
    """The auth interceptor when tokens are configured, else nothing."""
    caller_of: CallerResolver
    """The servicer's caller resolver: the token's name and roles, or ANONYMOUS."""


def load_security(settings: Settings, refusals: RefusalLog | None = None) -> ServerSecurity:
    """Tokens, TLS and the exposure rules from ``settings``; the auth interceptor logs
    (and counts) its refusals through ``refusals``.

    Raises UnsafeConfiguration for malformed settings or an unsafe exposure; logs a
    warning for every risk it accepts (auth off on loopback, STAGECONFIG_INSECURE).
    """
    tokens = TokenTable.parse(
        settings.tokens.get_secret_value() if settings.tokens is not None else None,
        settings.tokens_file,
    )
    credentials = server_credentials(settings.tls_cert, settings.tls_key, settings.tls_client_ca)
    address = settings.address
    if not is_loopback(address):
        missing = []
        if not tokens:
            missing.append("no tokens (STAGECONFIG_TOKENS / STAGECONFIG_TOKENS_FILE)")
        if credentials is None:
            missing.append("no TLS (STAGECONFIG_TLS_CERT / STAGECONFIG_TLS_KEY)")
        if missing and not settings.insecure:
            raise UnsafeConfiguration(
                f"STAGECONFIG_ADDRESS {address} is not a loopback address but has "
                f"{' and '.join(missing)}: anyone who can reach it could read every API key "
                "or change the config. Configure tokens and TLS, listen on 127.0.0.1, or set "
                "STAGECONFIG_INSECURE=1 to accept the risk."
            )
        if missing:
            log.warning(
                "STAGECONFIG_INSECURE=1: serving on %s with %s", address, " and ".join(missing)
            )
    if not tokens:
        log.warning(
            "authentication is OFF (no STAGECONFIG_TOKENS): every caller on %s can read "
            "plaintext API keys and change configs",
            address,
        )
    for name in sorted(tokens.weak_names):
        log.warning("the secret of token %r is short: use at least 16 random characters", name)
    interceptors: tuple[grpc.aio.ServerInterceptor[Any, Any], ...] = ()
    caller_of: CallerResolver = _anonymous
    if tokens:
        interceptors = (
            AuthInterceptor(
                tokens,
                reflection_requires_token=settings.reflection_requires_token,
                refusals=refusals,
            ),
        )
        caller_of = tokens.caller_of
    return ServerSecurity(
        tokens=tokens,
        credentials=credentials,
        mutual_tls=settings.tls_client_ca is not None,
        interceptors=interceptors,
        caller_of=caller_of,
    )
