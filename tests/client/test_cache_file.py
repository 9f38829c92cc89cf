"""The last-known-good file: atomic, private, encrypted, checked — and a client started
while the server is down serves from it, then converges."""

from __future__ import annotations

import json
import logging
import os
import stat
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from types import MappingProxyType

import pytest

from stageconfig import (
    CacheFileError,
    ClientState,
    ConfigChangeEvent,
    ConfigClient,
    ConfigSource,
    ConfigStatus,
    ProviderKind,
    SnapshotSource,
    StageConfig,
    StageType,
    TimingOptions,
)
from stageconfig._cache_file import CachedState, CacheFile
from stageconfig._types import Route
from tests.client.conftest import CACHE_KEY, ThreadedServer
from tests.client.test_client import wait_until

VOICE_KEY = "AQVN-cached-voice-key-7781"


@pytest.fixture
def cache_path(tmp_path: Path) -> Path:
    return tmp_path / "lkg" / "stageconfig.json"


@pytest.fixture
def clients() -> Iterator[list[ConfigClient]]:
    made: list[ConfigClient] = []
    yield made
    for client in made:
        client.close()


def test_file_is_atomic_private_encrypted_and_checksummed(
    server: ThreadedServer, cache_path: Path, cache_key: str, clients: list[ConfigClient]
) -> None:
    revision = server.voice("alena", api_key=VOICE_KEY)
    client = ConfigClient(server.target, cache_path=cache_path)
    clients.append(client)
    client.wait_ready(10)
    wait_until(cache_path.exists, 5, "the file is written")

    assert stat.S_IMODE(cache_path.stat().st_mode) == 0o600
    text = cache_path.read_text()
    assert VOICE_KEY not in text
    document = json.loads(text)
    assert document["revision"] == revision
    assert document["checksum"].startswith("hmac-sha256:")
    assert [c["model"] for c in document["configs"]] == ["alena"]
    assert os.listdir(cache_path.parent) == [cache_path.name]  # no temp file left behind

    newer = server.voice("zahar", api_key=VOICE_KEY)
    wait_until(lambda: json.loads(cache_path.read_text())["revision"] == newer, 5, "rewritten")
    loaded = CacheFile(cache_path, cache_key).load()
    assert loaded is not None
    assert loaded.configs[0].api_key == VOICE_KEY
    assert loaded.configs[0].model == "zahar"


def test_a_client_started_while_the_server_is_down_serves_the_file_then_converges(
    server: ThreadedServer, cache_path: Path, cache_key: str, clients: list[ConfigClient]
) -> None:
    server.voice("alena", api_key=VOICE_KEY)
    writer = ConfigClient(server.target, cache_path=cache_path)
    clients.append(writer)
    writer.wait_ready(10)
    written = writer.applied_revision
    wait_until(cache_path.exists, 5, "the file is written")
    writer.close()
    server.stop()

    client = ConfigClient(
        server.target, cache_path=cache_path, timing=TimingOptions(backoff_max_seconds=0.5)
    )
    clients.append(client)
    events: list[ConfigChangeEvent] = []
    client.on_change(events.append)
    client.start()
    assert client.state is ClientState.STALE
    config = client.get(StageType.VOICE)
    assert (config.model, config.api_key) == ("alena", VOICE_KEY)
    assert client.applied_revision == written
    assert client.staleness_seconds < 60
    assert [(e.source, e.revision) for e in events] == [(SnapshotSource.CACHE, written)]

    server.start()
    newer = server.voice("zahar", api_key=VOICE_KEY)
    wait_until(lambda: client.applied_revision == newer, 10, "the client converges")
    wait_until(lambda: client.state is ClientState.READY, 5, "READY")
    assert client.get(StageType.VOICE).model == "zahar"
    # It resumed from the file's revision: the change came as a change.
    assert events[-1].source is SnapshotSource.CHANGE


@pytest.mark.parametrize("damage", ["tamper", "truncate", "other-key"])
def test_a_damaged_file_is_refused_whole(
    server: ThreadedServer,
    cache_path: Path,
    cache_key: str,
    clients: list[ConfigClient],
    caplog: pytest.LogCaptureFixture,
    damage: str,
) -> None:
    server.voice("alena", api_key=VOICE_KEY)
    writer = ConfigClient(server.target, cache_path=cache_path)
    clients.append(writer)
    writer.wait_ready(10)
    wait_until(cache_path.exists, 5, "the file is written")
    writer.close()
    server.stop()
    if damage == "tamper":
        cache_path.write_text(cache_path.read_text().replace('"alena"', '"zahar"'))
    elif damage == "truncate":
        cache_path.write_bytes(cache_path.read_bytes()[:100])

    key = "another-cache-key-fedcba9876543210" if damage == "other-key" else cache_key
    client = ConfigClient(server.target, cache_path=cache_path, cache_key=key)
    clients.append(client)
    with caplog.at_level(logging.WARNING, logger="stageconfig.client"):
        client.start()
    assert client.state is ClientState.CONNECTING  # nothing served from a bad file
    assert "ignoring the last-known-good file" in caplog.text
    with pytest.raises(CacheFileError):
        CacheFile(cache_path, key).load()


def test_a_cache_path_without_a_key_is_refused(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("STAGECONFIG_CACHE_KEY", raising=False)
    with pytest.raises(CacheFileError, match="STAGECONFIG_CACHE_KEY"):
        ConfigClient("127.0.0.1:1", cache_path=tmp_path / "lkg.json")
    assert not (tmp_path / "lkg.json").exists()


def test_round_trip_keeps_every_field(tmp_path: Path) -> None:
    config = StageConfig(
        stage_type=StageType.POEM,
        provider_kind=ProviderKind.YANDEX_GPT,
        api_key="AQVN-yandex-1234567890",
        model="yandexgpt/latest",
        revision=7,
        status=ConfigStatus.WARNING,
        source=ConfigSource.DATABASE,
        options=MappingProxyType({"folder_id": "b1gabc"}),
        status_reason="model replaced",
        api_key_fingerprint="abcd1234",
        updated_at=datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC),
        fallbacks=(
            Route(
                ProviderKind.GEMINI,
                "AIza-fallback-route-key-77",
                "gemini-2.5-flash",
                MappingProxyType({"x": "y"}),
                status=ConfigStatus.ACTIVE,
                api_key_fingerprint="ef01",
            ),
        ),
    )
    state = CachedState(
        revision=9,
        target="config:50051",
        stages=frozenset(StageType),
        configs=(config,),
        written_at=datetime.now(UTC),
    )
    cache = CacheFile(tmp_path / "lkg.json", CACHE_KEY)
    started = time.monotonic()
    cache.save(state)
    assert time.monotonic() - started < 1
    assert cache.load() == state
    assert CACHE_KEY not in repr(cache)
    written = (tmp_path / "lkg.json").read_text()
    assert "AIza-fallback-route-key-77" not in written  # fallback keys are encrypted too
    assert "AQVN-yandex-1234567890" not in written


def test_a_file_written_before_fallback_routes_still_loads(tmp_path: Path) -> None:
    config = StageConfig(
        stage_type=StageType.VOICE,
        provider_kind=ProviderKind.SPEECHKIT,
        api_key="AQVN-older-file-key-01",
        model="alena",
        revision=3,
        status=ConfigStatus.UNVERIFIED,
        source=ConfigSource.DATABASE,
    )
    state = CachedState(
        3, "config:50051", frozenset({StageType.VOICE}), (config,), datetime.now(UTC)
    )
    cache = CacheFile(tmp_path / "lkg.json", CACHE_KEY)
    cache.save(state)
    # Rewrite it as an older client did: no "fallbacks" in the configs, checksum redone.
    document = json.loads((tmp_path / "lkg.json").read_text())
    del document["checksum"]
    for entry in document["configs"]:
        del entry["fallbacks"]
    document["checksum"] = cache._checksum(document)
    (tmp_path / "lkg.json").write_text(json.dumps(document))
    loaded = cache.load()
    assert loaded is not None
    assert loaded.configs[0].fallbacks == ()
    assert loaded == state
