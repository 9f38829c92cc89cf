"""Each adapter's own table, one parametrized test per shape, against the fake providers.

What only one provider does (Gemini's pages, YandexGPT's fallback, OpenAI's chat-model
rule, SpeechKit's voices, Suno's body codes) stays in that provider's test module; what
every adapter is asked alike (where the key goes, what a good key lists, how each
failure is classified, a rejected or an empty answer, the real endpoint) lives here.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from stageconfig_server.domain import ConfigStatus, ProviderKind, StatusCause
from stageconfig_server.providers import (
    GeminiAdapter,
    OpenAIAdapter,
    PikaAdapter,
    ProviderAdapter,
    ProviderCredentials,
    ProviderFailure,
    SpeechKitAdapter,
    SunoAdapter,
    YandexGptAdapter,
)
from stageconfig_server.providers.adapter import AdapterBase
from tests.fakes.provider_server import FakeProviders

from .conftest import FOLDER_ID, SECRET_KEY

OPENAI, GEMINI, YANDEX = ProviderKind.OPENAI, ProviderKind.GEMINI, ProviderKind.YANDEX_GPT
SUNO, PIKA = ProviderKind.SUNO, ProviderKind.PIKA
INVALID, ERROR = ConfigStatus.INVALID, ConfigStatus.ERROR

NAMES = {
    OPENAI: "OpenAI",
    GEMINI: "Gemini",
    YANDEX: "YandexGPT",
    SUNO: "Suno (sunoapi.org)",
    PIKA: "Pika (fal.ai)",
}
"""How each provider is named at the start of its failure messages."""


@pytest.mark.parametrize(
    ("adapter_type", "url"),
    [
        (OpenAIAdapter, "https://api.openai.com/v1"),  # the SDK's base_url, /v1 included
        (GeminiAdapter, "https://generativelanguage.googleapis.com"),  # no API version
        (YandexGptAdapter, "https://ai.api.cloud.yandex.net/v1"),
        (SpeechKitAdapter, "https://tts.api.cloud.yandex.net"),
        (SunoAdapter, "https://api.sunoapi.org"),
        (PikaAdapter, "https://api.fal.ai"),
    ],
)
def test_default_base_url(adapter_type: type[AdapterBase], url: str) -> None:
    assert adapter_type().base_url == url
    assert adapter_type.default_base_url == url


@dataclass(frozen=True)
class KeyCheck:
    """The first request a key check makes and where the key travels."""

    kind: ProviderKind
    path: str
    headers: dict[str, str]
    query: dict[str, str] | None = None  # exact, when given
    requests: int = 1


KEY_CHECKS = [
    KeyCheck(OPENAI, "/v1/models", {"Authorization": f"Bearer {SECRET_KEY}"}),
    # Gemini: in a header, never in the URL (URLs end up in access logs); two pages.
    KeyCheck(GEMINI, "/v1/models", {"x-goog-api-key": SECRET_KEY}, requests=2),
    KeyCheck(
        YANDEX,
        "/v1/models",
        {"Authorization": f"Bearer {SECRET_KEY}", "OpenAI-Project": FOLDER_ID},
    ),
    KeyCheck(SUNO, "/api/v1/generate/credit", {"Authorization": f"Bearer {SECRET_KEY}"}),
    KeyCheck(
        PIKA,
        "/v1/models/pricing",
        {"Authorization": f"Key {SECRET_KEY}"},
        query={"endpoint_id": "fal-ai/pika/v2.2/text-to-video"},
    ),
]


@pytest.mark.parametrize("check", KEY_CHECKS, ids=lambda c: c.kind.value)
async def test_where_the_key_goes(
    adapters: dict[ProviderKind, ProviderAdapter],
    fake: FakeProviders,
    credentials: ProviderCredentials,
    check: KeyCheck,
) -> None:
    await adapters[check.kind].list_models(credentials)
    assert len(fake.requests) == check.requests
    assert (fake.requests[0].method, fake.requests[0].path) == ("GET", check.path)
    if check.query is not None:
        assert fake.requests[0].query == check.query
    for request in fake.requests:
        for name, value in check.headers.items():
            assert request.header(name) == value
        assert SECRET_KEY not in str(request.query)
        assert "key" not in request.query


@dataclass(frozen=True)
class Listing:
    """What a good key lists, given what the fake offers (None: its defaults)."""

    kind: ProviderKind
    expected: list[str]
    offered: list[str] | None = None


LISTINGS = [
    # The fake gives later-listed models a later `created`; the adapter sorts on it.
    Listing(OPENAI, ["o3-mini", "gpt-4o-mini", "gpt-4o"]),
    Listing(GEMINI, ["gemini-2.5-flash", "gemini-2.5-pro"]),
    Listing(
        YANDEX,
        [f"gpt://{FOLDER_ID}/yandexgpt/rc", "yandexgpt/latest"],
        offered=[f"gpt://{FOLDER_ID}/yandexgpt/rc", "yandexgpt/latest"],
    ),
    Listing(SUNO, ["V5_5", "V5", "V4_5PLUS", "V4_5", "V4"]),  # static, newest first
    Listing(
        PIKA,
        [
            "fal-ai/pika/v2.2/text-to-video",
            "fal-ai/pika/v2.2/image-to-video",
            "fal-ai/pika/v2.2/pikascenes",
            "fal-ai/pika/v2.1/text-to-video",
            "fal-ai/pika/v2/turbo/text-to-video",
        ],
    ),
]


@pytest.mark.parametrize("listing", LISTINGS, ids=lambda listing: listing.kind.value)
async def test_a_good_key_lists_the_models_in_order(
    adapters: dict[ProviderKind, ProviderAdapter],
    fake: FakeProviders,
    credentials: ProviderCredentials,
    listing: Listing,
) -> None:
    if listing.offered is not None:
        fake.set_models(listing.kind, listing.offered)
    assert await adapters[listing.kind].list_models(credentials) == listing.expected


@dataclass(frozen=True)
class FailureRow:
    """One row of an adapter's failure table: the fake's failure → the verdict."""

    kind: ProviderKind
    failure: str
    status: ConfigStatus
    cause: StatusCause
    http_status: int | None
    says: list[str] = field(default_factory=list)  # in the message, besides the name


FAILURES = [
    FailureRow(OPENAI, "invalid_key", INVALID, StatusCause.AUTH, 401),
    FailureRow(OPENAI, "permission", INVALID, StatusCause.PERMISSION, 403),
    FailureRow(OPENAI, "region", ERROR, StatusCause.REGION, 403),
    FailureRow(OPENAI, "quota", ERROR, StatusCause.QUOTA, 429),
    FailureRow(OPENAI, "rate_limit", ERROR, StatusCause.RATE_LIMIT, 429),
    FailureRow(OPENAI, "server_error", ERROR, StatusCause.UPSTREAM, 500),
    FailureRow(OPENAI, "listing_unavailable", ERROR, StatusCause.UPSTREAM, 404),
    FailureRow(OPENAI, "malformed", ERROR, StatusCause.UPSTREAM, None),
    # Gemini reports a bad key and an unsupported region as 400.
    FailureRow(GEMINI, "invalid_key", INVALID, StatusCause.AUTH, 400),
    FailureRow(GEMINI, "permission", INVALID, StatusCause.PERMISSION, 403),
    FailureRow(GEMINI, "region", ERROR, StatusCause.REGION, 400),
    FailureRow(GEMINI, "quota", ERROR, StatusCause.QUOTA, 429),
    FailureRow(GEMINI, "rate_limit", ERROR, StatusCause.RATE_LIMIT, 429),
    FailureRow(GEMINI, "server_error", ERROR, StatusCause.UPSTREAM, 500),
    FailureRow(GEMINI, "listing_unavailable", ERROR, StatusCause.UPSTREAM, 404),
    FailureRow(GEMINI, "malformed", ERROR, StatusCause.UPSTREAM, None),
    # YandexGPT: none of these falls back to the static list.
    FailureRow(YANDEX, "invalid_key", INVALID, StatusCause.AUTH, 401),
    FailureRow(YANDEX, "permission", INVALID, StatusCause.PERMISSION, 403),
    FailureRow(YANDEX, "quota", ERROR, StatusCause.QUOTA, 429),
    FailureRow(YANDEX, "rate_limit", ERROR, StatusCause.RATE_LIMIT, 429),
    FailureRow(YANDEX, "server_error", ERROR, StatusCause.UPSTREAM, 500),
    FailureRow(YANDEX, "malformed", ERROR, StatusCause.UPSTREAM, None),
    # Suno: the body's code wins over the HTTP status (often 200 carrying an error).
    FailureRow(SUNO, "invalid_key", INVALID, StatusCause.AUTH, 401),
    FailureRow(SUNO, "body_error_401", INVALID, StatusCause.AUTH, 200, ["HTTP 200, code 401"]),
    FailureRow(SUNO, "quota", ERROR, StatusCause.QUOTA, 429),  # "insufficient credits"
    FailureRow(SUNO, "body_error_429", ERROR, StatusCause.QUOTA, 200),
    FailureRow(SUNO, "rate_limit", ERROR, StatusCause.RATE_LIMIT, 200),  # code 430
    FailureRow(SUNO, "body_error_455", ERROR, StatusCause.UPSTREAM, 200),  # maintenance
    FailureRow(SUNO, "server_error", ERROR, StatusCause.UPSTREAM, 500),
    FailureRow(SUNO, "malformed", ERROR, StatusCause.UPSTREAM, 200),
    # Pika (fal.ai): 403 "Exhausted balance" is an empty wallet, not a bad key.
    FailureRow(PIKA, "invalid_key", INVALID, StatusCause.AUTH, 401),
    FailureRow(PIKA, "permission", INVALID, StatusCause.PERMISSION, 403),
    FailureRow(PIKA, "quota", ERROR, StatusCause.QUOTA, 403),
    FailureRow(PIKA, "rate_limit", ERROR, StatusCause.RATE_LIMIT, 429),
    FailureRow(PIKA, "server_error", ERROR, StatusCause.UPSTREAM, 500),
    FailureRow(PIKA, "malformed", ERROR, StatusCause.UPSTREAM, 200),
]


@pytest.mark.parametrize("row", FAILURES, ids=lambda row: f"{row.kind.value}-{row.failure}")
async def test_failure_table(
    adapters: dict[ProviderKind, ProviderAdapter],
    fake: FakeProviders,
    credentials: ProviderCredentials,
    row: FailureRow,
) -> None:
    fake.set_failure(row.kind, row.failure)
    with pytest.raises(ProviderFailure) as caught:
        await adapters[row.kind].list_models(credentials)
    assert (caught.value.status, caught.value.cause) == (row.status, row.cause)
    assert caught.value.http_status == row.http_status
    assert caught.value.message.startswith(NAMES[row.kind] + " ")
    for said in row.says:
        assert said in caught.value.message
    assert SECRET_KEY not in caught.value.message  # several fakes echo the key back


@dataclass(frozen=True)
class Rejection:
    """A key the provider refuses (the fake echoes it back in its error)."""

    kind: ProviderKind
    key: str
    says: str = ""


REJECTIONS = [
    Rejection(OPENAI, "sk-revoked"),
    Rejection(GEMINI, "AIza-revoked"),
    # A rejected key is never hidden behind YandexGPT's static fallback.
    Rejection(YANDEX, "AQVN-revoked"),
    Rejection(SUNO, "suno-revoked"),
    Rejection(PIKA, "fal-revoked", says="No user found for Key ID and Secret"),
]


@pytest.mark.parametrize("rejection", REJECTIONS, ids=lambda r: r.kind.value)
async def test_a_rejected_key_is_invalid_while_others_work(
    adapters: dict[ProviderKind, ProviderAdapter],
    fake: FakeProviders,
    credentials: ProviderCredentials,
    rejection: Rejection,
) -> None:
    fake.reject_key(rejection.key)
    adapter = adapters[rejection.kind]
    with pytest.raises(ProviderFailure) as caught:
        await adapter.list_models(ProviderCredentials(rejection.key, {"folder_id": FOLDER_ID}))
    assert (caught.value.status, caught.value.cause) == (INVALID, StatusCause.AUTH)
    assert rejection.key not in caught.value.message
    assert rejection.says in caught.value.message
    assert await adapter.list_models(credentials)


@pytest.mark.parametrize("kind", [OPENAI, GEMINI, YANDEX], ids=lambda kind: kind.value)
async def test_a_listing_with_nothing_usable_is_an_upstream_error(
    adapters: dict[ProviderKind, ProviderAdapter],
    fake: FakeProviders,
    credentials: ProviderCredentials,
    kind: ProviderKind,
) -> None:
    # OpenAI's default list holds non-chat models too; Gemini's an embedding model.
    fake.set_models(kind, [])
    with pytest.raises(ProviderFailure) as caught:
        await adapters[kind].list_models(credentials)
    assert (caught.value.status, caught.value.cause) == (ERROR, StatusCause.UPSTREAM)
    assert "no usable model" in caught.value.message
