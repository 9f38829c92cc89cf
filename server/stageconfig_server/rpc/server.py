"""The grpc.aio server: the service's handlers, health, reflection, keepalive policy.

``create_server`` binds (port 0 allowed) and returns the server, the bound port and
its health (``rpc/health.ServingHealth``), so tests run real servers on free ports.

Every method's request deserializer is guarded (``rpc/decoding.py``: bytes that do not
decode get INVALID_ARGUMENT, not UNKNOWN), and streaming methods are held to the
per-peer and per-token stream limits (``rpc/stream_limits.py``) when given.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import grpc
from google.protobuf import symbol_database
from grpc_reflection.v1alpha import reflection

from stageconfig_contract.v1 import stage_config_pb2 as pb
from stageconfig_server.rpc.decoding import guarded_deserializer, reject_undecodable
from stageconfig_server.rpc.health import HEALTH_SERVICE_NAME, NOT_SERVING, SERVING, ServingHealth
from stageconfig_server.rpc.instrumentation import Instrument
from stageconfig_server.rpc.refusals import RefusalLog
from stageconfig_server.rpc.servicer import StageConfigServicer
from stageconfig_server.rpc.stream_limits import StreamLimits

_refusal_logger = logging.getLogger("stageconfig_server.rpc.refusals")

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["StageConfigService"].full_name

KEEPALIVE_OPTIONS: tuple[tuple[str, int], ...] = (
    # Let clients ping every 30-60 s without being told "too many pings".
    ("grpc.http2.min_ping_interval_without_data_ms", 20_000),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.max_ping_strikes", 0),
    # The server pings idle connections too, to find dead peers.
    ("grpc.keepalive_time_ms", 60_000),
    ("grpc.keepalive_timeout_ms", 20_000),
)
"""Keepalive: clients may ping every 20 s or slower; the server pings every 60 s."""


def connection_age_options(max_age_seconds: float, grace_seconds: float) -> list[tuple[str, int]]:
    """Close connections after ``max_age_seconds`` (plus grace for streams to finish), so
    long WatchConfig streams rebalance across replicas; 0 turns it off."""
    if max_age_seconds <= 0:
        return []
    return [
        ("grpc.max_connection_age_ms", int(max_age_seconds * 1000)),
        ("grpc.max_connection_age_grace_ms", int(grace_seconds * 1000)),
    ]


PRE_ENCODED_UNARY = frozenset({"GetActiveConfig"})
"""Unary methods whose servicer returns the serialized response: GetActiveConfig is the
hot read of workers that do not hold a watch, so its answer is encoded once per config
and role instead of converted and serialized per call (scripts/bench)."""


def _identity(data: bytes) -> bytes:
    return data


def service_handler(
    servicer: StageConfigServicer,
    instrument: Instrument | None = None,
    *,
    refusals: RefusalLog | None = None,
    stream_limits: StreamLimits | None = None,
) -> grpc.GenericRpcHandler[Any, Any]:
    """The StageConfigService handlers, built from the proto's descriptor.

    ``instrument`` (``rpc/instrumentation.py``) wraps each method once, here, outermost
    (so refused calls are measured too); inside it, undecodable requests are refused
    (logged through ``refusals``), then streams are held to ``stream_limits``.

    WatchConfig's responses are serialized by the broadcaster (once per change for all
    watchers), and GetActiveConfig's by the servicer (once per config and role, see
    ``PRE_ENCODED_UNARY``), so their serializer is the identity.
    """
    handlers: dict[str, grpc.RpcMethodHandler[Any, Any]] = {}
    db = symbol_database.Default()
    log_refusals = refusals if refusals is not None else RefusalLog(_refusal_logger)
    for method in pb.DESCRIPTOR.services_by_name["StageConfigService"].methods:
        request_cls: Any = db.GetSymbol(method.input_type.full_name)
        response_cls: Any = db.GetSymbol(method.output_type.full_name)
        behaviour = getattr(servicer, method.name)
        if method.server_streaming and stream_limits is not None:
            behaviour = stream_limits.limit(behaviour, method.name)
        behaviour = reject_undecodable(behaviour, log_refusals, method.name)
        if instrument is not None:
            behaviour = instrument(method.name, behaviour, method.server_streaming)
        deserializer = guarded_deserializer(request_cls)
        if method.server_streaming:
            handlers[method.name] = grpc.unary_stream_rpc_method_handler(
                behaviour,
                request_deserializer=deserializer,
                response_serializer=_identity,
            )
        else:
            handlers[method.name] = grpc.unary_unary_rpc_method_handler(
                behaviour,
                request_deserializer=deserializer,
                response_serializer=(
                    _identity
                    if method.name in PRE_ENCODED_UNARY
                    else response_cls.SerializeToString
                ),
            )
    return grpc.method_handlers_generic_handler(SERVICE_NAME, handlers)


def create_server(
    servicer: StageConfigServicer,
    address: str,
    *,
    credentials: grpc.ServerCredentials | None = None,
    interceptors: Sequence[grpc.aio.ServerInterceptor[Any, Any]] = (),
    options: Sequence[tuple[str, Any]] = (),
    instrument: Instrument | None = None,
    refusals: RefusalLog | None = None,
    stream_limits: StreamLimits | None = None,
) -> tuple[grpc.aio.Server, int, ServingHealth]:
    """A server with the service, health and reflection, bound to ``address``.

    Returns the server (not started), the bound port and its health, which reports
    ``""`` and the service together (SERVING until told otherwise).
    """
    server = grpc.aio.server(
        interceptors=list(interceptors), options=[*KEEPALIVE_OPTIONS, *options]
    )
    server.add_generic_rpc_handlers(
        (service_handler(servicer, instrument, refusals=refusals, stream_limits=stream_limits),)
    )
    health = ServingHealth(("", SERVICE_NAME))
    health.add_to(server)
    reflection.enable_server_reflection(
        (SERVICE_NAME, HEALTH_SERVICE_NAME, reflection.SERVICE_NAME), server
    )
    try:
        if credentials is not None:
            port = server.add_secure_port(address, credentials)
        else:
            port = server.add_insecure_port(address)
    except RuntimeError:  # recent grpc raises where older versions returned 0
        port = 0
    if port == 0:
        raise OSError(f"could not bind {address} (is another process listening on it?)")
    return server, port, health


__all__ = [
    "KEEPALIVE_OPTIONS",
    "NOT_SERVING",
    "PRE_ENCODED_UNARY",
    "SERVICE_NAME",
    "SERVING",
    "Instrument",
    "connection_age_options",
    "create_server",
    "service_handler",
]
