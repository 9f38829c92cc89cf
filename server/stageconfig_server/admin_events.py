"""Events an admin must hear about (a replaced model, a rollout that started or ended): a
structured WARNING log line and,
when ``STAGECONFIG_ADMIN_WEBHOOK_URL`` is set, a JSON POST with a short timeout whose
failure never affects the sync."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

import httpx

from stageconfig_server.domain import ProviderKind, StageType

log = logging.getLogger("stageconfig.admin_events")

WEBHOOK_TIMEOUT_SECONDS = 5.0


@dataclass(frozen=True, slots=True)
class ModelReplaced:
    """The selected model vanished and the first available one took its place."""

    stage_type: StageType
    provider_kind: ProviderKind
    old_model: str
    new_model: str
    revision: int
    at: datetime

    def as_json(self) -> dict[str, object]:
        """The event's JSON form (log line and webhook body)."""
        return {
            "event": "model_replaced",
            "stage_type": self.stage_type.value,
            "provider_kind": self.provider_kind.value,
            "old_model": self.old_model,
            "new_model": self.new_model,
            "revision": self.revision,
            "at": self.at.isoformat(),
            "status": "WARNING",
        }


@dataclass(frozen=True, slots=True)
class RolloutEvent:
    """A rollout started, was promoted or was aborted (issue 15); no key in any form."""

    event: str
    """rollout_started, rollout_promoted or rollout_aborted."""
    stage_type: StageType
    rollout_id: int
    candidate_revision: int
    stable_revision: int
    revision: int
    """The revision the event wrote."""
    actor: str
    decision: str
    at: datetime

    def as_json(self) -> dict[str, object]:
        """The event's JSON form (log line and webhook body)."""
        return {
            "event": self.event,
            "stage_type": self.stage_type.value,
            "rollout_id": self.rollout_id,
            "candidate_revision": self.candidate_revision,
            "stable_revision": self.stable_revision,
            "revision": self.revision,
            "actor": self.actor,
            "decision": self.decision,
            "at": self.at.isoformat(),
        }


class AdminEvents(Protocol):
    """Where admin-facing events go."""

    async def model_replaced(self, event: ModelReplaced) -> None:
        """Report a replaced model. Must not raise."""
        ...

    async def rollout(self, event: RolloutEvent) -> None:
        """Report a rollout's start or end. Must not raise."""
        ...


class LogAndWebhookEvents:
    """Logs every event at WARNING and POSTs it to a webhook when one is configured."""

    def __init__(self, webhook_url: str | None, timeout_seconds: float = WEBHOOK_TIMEOUT_SECONDS):
        self._url = webhook_url
        self._timeout = timeout_seconds

    async def model_replaced(self, event: ModelReplaced) -> None:
        """Log the event and POST it; a failing webhook is logged, never raised."""
        body = event.as_json()
        log.warning(
            "model replaced on stage %s: %s is no longer offered by %s, now using %s "
            "(revision %d) %s",
            event.stage_type.value,
            event.old_model,
            event.provider_kind.value,
            event.new_model,
            event.revision,
            json.dumps(body, sort_keys=True),
        )
        await self._post(body)

    async def rollout(self, event: RolloutEvent) -> None:
        """Log the rollout event and POST it; a failing webhook is logged, never raised."""
        body = event.as_json()
        log.warning(
            "rollout %d of stage %s: %s at revision %d by %s %s",
            event.rollout_id,
            event.stage_type.value,
            event.event,
            event.revision,
            event.actor,
            json.dumps(body, sort_keys=True),
        )
        await self._post(body)

    async def _post(self, body: dict[str, object]) -> None:
        if not self._url:
            return
        try:
            async with httpx.AsyncClient(timeout=self._timeout) as client:
                response = await client.post(self._url, json=body)
                response.raise_for_status()
        except (httpx.HTTPError, OSError) as exc:
            log.warning("admin webhook failed (%s); the sync goes on", type(exc).__name__)
