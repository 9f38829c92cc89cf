"""Pika through fal.ai: check the key, serve the static endpoint list.

fal.ai has no per-key model listing, so the key is checked with the pricing
endpoint, which generates (and bills) nothing:
``GET {base}/v1/models/pricing?endpoint_id=fal-ai/pika/v2.2/text-to-video`` with
``Authorization: Key KEY``. fal explains errors in ``{"detail": "…"}``.

Base URL convention: the platform API's host root (default ``https://api.fal.ai``).
"""

from __future__ import annotations

from collections.abc import Mapping

from stageconfig_server.domain import ConfigStatus, ProviderKind, StatusCause
from stageconfig_server.providers.adapter import AdapterBase, json_or_none
from stageconfig_server.providers.base import classify_http_status

DEFAULT_BASE_URL = "https://api.fal.ai"
"""The real fal.ai platform API."""

PRICING_PATH = "/v1/models/pricing"
"""The key check (a read of the price list)."""

CHECK_ENDPOINT_ID = "fal-ai/pika/v2.2/text-to-video"
"""The endpoint whose price is asked for: any Pika endpoint would do."""

MODELS: tuple[str, ...] = (
    "fal-ai/pika/v2.2/text-to-video",
    "fal-ai/pika/v2.2/image-to-video",
    "fal-ai/pika/v2.2/pikascenes",
    "fal-ai/pika/v2.1/text-to-video",
    "fal-ai/pika/v2/turbo/text-to-video",
)
"""fal endpoint ids for Pika, in providers.md's order (newest version first)."""

PROVIDER = "Pika (fal.ai)"


def classify_fal_answer(http_status: int, detail: str) -> tuple[ConfigStatus, StatusCause]:
    """fal's ``detail`` first, then the HTTP status.

    A 403 is usually "not allowed", but fal also answers 403 "User is locked.
    Reason: Exhausted balance" — an empty wallet, not a bad key.
    """
    lowered = detail.lower()
    if "no user found for key" in lowered:
        return ConfigStatus.INVALID, StatusCause.AUTH
    if "exhausted balance" in lowered or "top up" in lowered:
        return ConfigStatus.ERROR, StatusCause.QUOTA
    return classify_http_status(http_status)


class PikaAdapter(AdapterBase):
    """Checks a fal.ai key and returns the static Pika endpoint ids."""

    kind = ProviderKind.PIKA
    provider = PROVIDER
    default_base_url = DEFAULT_BASE_URL

    async def fetch_models(self, api_key: str, options: Mapping[str, str]) -> list[str]:
        """The static endpoint ids once fal accepted the key."""
        response = await self.get_for_key_check(
            PRICING_PATH,
            api_key=api_key,
            params={"endpoint_id": CHECK_ENDPOINT_ID},
            headers={"Authorization": f"Key {api_key}"},
        )
        body = json_or_none(response)
        if not response.is_success:
            detail = body.get("detail") if isinstance(body, dict) else None
            detail = detail if isinstance(detail, str) else ""
            verdict = classify_fal_answer(response.status_code, detail)
            raise self.failed_answer(response, verdict, api_key=api_key, said=detail)
        if not isinstance(body, dict):
            raise self.unreadable_check(response, api_key=api_key, check="pricing check")
        return list(MODELS)


__all__ = [
    "CHECK_ENDPOINT_ID",
    "DEFAULT_BASE_URL",
    "MODELS",
    "PRICING_PATH",
    "PikaAdapter",
    "classify_fal_answer",
]
