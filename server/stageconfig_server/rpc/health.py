"""``grpc.health.v1`` for the server: grpc's aio health servicer, and the adapter that
lets the core's ``DatabaseHealth`` drive it without knowing grpc.

Every service this server reports (``""``, the whole server, and
``stageconfig.v1.StageConfigService``) moves together: the database is the only thing
that can make this server unable to serve, and it affects them all alike. After
``enter_graceful_shutdown`` grpc's servicer ignores every update, so nothing can turn a
stopping server back to SERVING.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING

HEALTH_SERVICE_NAME: str = health.SERVICE_NAME
"""``grpc.health.v1.Health``: open to every caller (probes carry no token)."""


class ServingHealth:
    """The server's health servicer, set for several services at once.

    Implements the core's ``health.ServingStatus``; ``servicer`` is grpc's aio
    ``HealthServicer`` (a new one when not given).
    """

    def __init__(self, services: Sequence[str], servicer: Any = None) -> None:
        self.servicer: Any = (
            servicer if servicer is not None else health.aio.HealthServicer()  # type: ignore[attr-defined]
        )
        self._services = tuple(services)

    def add_to(self, server: grpc.aio.Server) -> None:
        """Serve ``grpc.health.v1.Health`` on ``server``."""
        health_pb2_grpc.add_HealthServicer_to_server(self.servicer, server)

    async def set_serving(self, serving: bool) -> None:
        """Every service SERVING (True) or NOT_SERVING (False)."""
        status = SERVING if serving else NOT_SERVING
        for service in self._services:
            await self.servicer.set(service, status)

    async def enter_graceful_shutdown(self) -> None:
        """NOT_SERVING for every service, for good (later updates are ignored)."""
        await self.servicer.enter_graceful_shutdown()


__all__ = ["HEALTH_SERVICE_NAME", "NOT_SERVING", "SERVING", "ServingHealth"]
