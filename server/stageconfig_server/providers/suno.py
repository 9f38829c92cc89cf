"""Suno through the sunoapi.org gateway: check the key, serve the static model list.

Suno has no official API and the gateway has no model listing, so the key is
checked with ``GET {base}/api/v1/generate/credit`` (``Authorization: Bearer KEY``)
and the models are the documented static list.

The gateway reports errors in the HTTP status *or* in the body's ``code`` (often
HTTP 200 carrying ``{"code": 401, …}``), so both are read; the body wins. Its codes
(docs.sunoapi.org): 401 unauthorized, 405 call limit exceeded, 429 *insufficient
credits*, 430 call frequency too high, 455 maintenance, 500 server error.

Base URL convention: the host root (default ``https://api.sunoapi.org``).
"""

from __future__ import annotations

from collections.abc import Mapping

from stageconfig_server.domain import ConfigStatus, ProviderKind, StatusCause
from stageconfig_server.providers.adapter import AdapterBase, json_or_none
from stageconfig_server.providers.base import classify_http_status

DEFAULT_BASE_URL = "https://api.sunoapi.org"
"""The real gateway."""

CREDIT_PATH = "/api/v1/generate/credit"
"""The key check: reads the credit balance, generates nothing."""

MODELS: tuple[str, ...] = ("V5_5", "V5", "V4_5PLUS", "V4_5", "V4")
"""The gateway's model versions, newest first (the admin's likely pick on top)."""

PROVIDER = "Suno (sunoapi.org)"

# The gateway's body codes. 429 is "insufficient credits" here, not a rate limit:
# the message is checked too, because gateways reword and renumber.
_BODY_CODES: Mapping[int, tuple[ConfigStatus, StatusCause]] = {
    401: (ConfigStatus.INVALID, StatusCause.AUTH),
    403: (ConfigStatus.INVALID, StatusCause.PERMISSION),
    405: (ConfigStatus.ERROR, StatusCause.RATE_LIMIT),
    429: (ConfigStatus.ERROR, StatusCause.QUOTA),
    430: (ConfigStatus.ERROR, StatusCause.RATE_LIMIT),
    455: (ConfigStatus.ERROR, StatusCause.UPSTREAM),
}


def classify_suno_answer(
    http_status: int, code: int | None, message: str
) -> tuple[ConfigStatus, StatusCause]:
    """Classify a non-success answer by its body ``code`` (if any), then HTTP status."""
    if code is None:
        return classify_http_status(http_status)
    status, cause = _BODY_CODES.get(code, classify_http_status(code))
    lowered = message.lower()
    if status is ConfigStatus.ERROR and "credit" in lowered:
        return ConfigStatus.ERROR, StatusCause.QUOTA
    if status is ConfigStatus.ERROR and ("frequen" in lowered or "rate limit" in lowered):
        return ConfigStatus.ERROR, StatusCause.RATE_LIMIT
    return status, cause


class SunoAdapter(AdapterBase):
    """Checks a sunoapi.org key and returns the static Suno model list."""

    kind = ProviderKind.SUNO
    provider = PROVIDER
    default_base_url = DEFAULT_BASE_URL

    async def fetch_models(self, api_key: str, options: Mapping[str, str]) -> list[str]:
        """The static models once the gateway accepted the key."""
        response = await self.get_for_key_check(
            CREDIT_PATH, api_key=api_key, headers={"Authorization": f"Bearer {api_key}"}
        )
        body = json_or_none(response)
        code = body.get("code") if isinstance(body, dict) else None
        code = code if isinstance(code, int) and not isinstance(code, bool) else None
        message = str(body.get("msg", "")) if isinstance(body, dict) else ""
        failed = (code is not None and code != 200) or not response.is_success
        if failed:
            verdict = classify_suno_answer(response.status_code, code, message)
            both = code is not None and code != response.status_code
            raise self.failed_answer(
                response,
                verdict,
                api_key=api_key,
                said=message,
                qualifier=f", code {code}" if both else "",
            )
        if code != 200:  # a 2xx whose body is not the documented {"code": 200, …}
            raise self.unreadable_check(response, api_key=api_key, check="credit check")
        return list(MODELS)


__all__ = [
    "CREDIT_PATH",
    "DEFAULT_BASE_URL",
    "MODELS",
    "SunoAdapter",
    "classify_suno_answer",
]
