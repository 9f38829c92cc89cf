"""Channels to the server, with the bearer token and TLS handled in one place.

Under TLS the token travels as call credentials. On a plaintext channel grpc drops call
credentials, so the token is added as ``authorization`` metadata by an interceptor
instead — acceptable only on loopback, which is the only place the server allows
plaintext with tokens unless told otherwise.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import grpc

from stageconfig.tls import TlsConfig

DEFAULT_OPTIONS: tuple[tuple[str, Any], ...] = (
    # Ping every 30 s so a half-open connection is noticed; the server allows 20 s.
    ("grpc.keepalive_time_ms", 30_000),
    ("grpc.keepalive_timeout_ms", 10_000),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.max_pings_without_data", 0),
    # Reconnect quickly after a server restart: while a server is away the client waits
    # for the channel to connect, so this cap is how late a returning server is noticed
    # (one refused connect per second or two per idle client is cheap).
    ("grpc.initial_reconnect_backoff_ms", 200),
    ("grpc.min_reconnect_backoff_ms", 200),
    ("grpc.max_reconnect_backoff_ms", 2_000),
)


if TYPE_CHECKING:
    _UnaryUnaryInterceptor = grpc.UnaryUnaryClientInterceptor[Any, Any]
    _UnaryStreamInterceptor = grpc.UnaryStreamClientInterceptor[Any, Any]
else:  # grpc's classes are generic only in grpc-stubs, not at runtime
    _UnaryUnaryInterceptor = grpc.UnaryUnaryClientInterceptor
    _UnaryStreamInterceptor = grpc.UnaryStreamClientInterceptor


class _MetadataInterceptor(_UnaryUnaryInterceptor, _UnaryStreamInterceptor):
    """Adds fixed metadata (the bearer token) to every call on a plaintext channel."""

    def __init__(self, metadata: Sequence[tuple[str, str]]) -> None:
        self._metadata = tuple(metadata)

    def _details(self, details: Any) -> Any:
        metadata = tuple(details.metadata or ()) + self._metadata
        return _CallDetails(
            details.method,
            details.timeout,
            metadata,
            details.credentials,
            getattr(details, "wait_for_ready", None),
            getattr(details, "compression", None),
        )

    def intercept_unary_unary(
        self, continuation: Callable[..., Any], details: Any, request: Any
    ) -> Any:
        return continuation(self._details(details), request)

    def intercept_unary_stream(
        self, continuation: Callable[..., Any], details: Any, request: Any
    ) -> Any:
        return continuation(self._details(details), request)


class _CallDetails(grpc.ClientCallDetails):
    def __init__(
        self,
        method: str,
        timeout: float | None,
        metadata: tuple[tuple[str, str], ...],
        credentials: Any,
        wait_for_ready: bool | None,
        compression: Any,
    ) -> None:
        self.method = method
        self.timeout = timeout
        self.metadata = metadata
        self.credentials = credentials
        self.wait_for_ready = wait_for_ready
        self.compression = compression


def create_channel(
    target: str,
    *,
    token: str | None = None,
    tls: TlsConfig | None = None,
    options: Sequence[tuple[str, Any]] = (),
) -> grpc.Channel:
    """A sync channel to ``target`` carrying ``token`` (if any); TLS when ``tls`` is
    given, plaintext otherwise."""
    # A caller's option replaces the default of the same name: grpc keeps the first of
    # duplicate channel args, so appending would silently lose the caller's value.
    all_options = list({**dict(DEFAULT_OPTIONS), **dict(options)}.items())
    if tls is not None:
        credentials = grpc.ssl_channel_credentials(
            root_certificates=tls.root_certificates,
            private_key=tls.client_key,
            certificate_chain=tls.client_certificate,
        )
        if token:
            credentials = grpc.composite_channel_credentials(
                credentials, grpc.access_token_call_credentials(token)
            )
        return grpc.secure_channel(target, credentials, options=all_options)
    channel = grpc.insecure_channel(target, options=all_options)
    if token:
        channel = grpc.intercept_channel(
            channel, _MetadataInterceptor([("authorization", f"Bearer {token}")])
        )
    return channel
