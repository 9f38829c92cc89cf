"""The last-known-good file: the client's config on disk, for starts while the server is
away.

Format (JSON, one object)::

    {
      "format": "stageconfig-last-known-good/1",
      "revision": 12,                        # the server revision the data is current at
      "target": "config.internal:50051",     # the server it came from
      "stages": ["POEM", "VOICE", ...],      # the stages the writer watched
      "written_at": "2025-01-01T12:00:00+00:00",
      "configs": [{"stage_type": "POEM", "provider_kind": "OPENAI", "model": "gpt-4o",
                   "api_key_encrypted": "gAAAA…", ...,
                   "fallbacks": [{"provider_kind": "GEMINI", "api_key_encrypted": "gAAAA…",
                                  "model": "gemini-2.5-flash", ...}]}],
      "checksum": "hmac-sha256:…"            # over everything above, canonical JSON
    }

API keys are Fernet tokens; the Fernet key and the checksum's HMAC key are derived with
HKDF-SHA256 from ``STAGECONFIG_CACHE_KEY`` (a fixed salt and one ``info`` per use, as
the server derives its key from ``ADMIN_SECRET_KEY``). The checksum is keyed, so a file
edited by hand, truncated, or written under another cache key is refused as a whole;
no plaintext key is ever written. Writes are atomic: a temp file in the same
directory (mode 0600), fsync, rename over the old file, fsync of the directory — a
reader (another worker process on the host) sees the old file or the new one.

``LastKnownGood`` is the client's side of it: the file is a fallback, so reading or
writing it never fails the client — a problem is logged and the client carries on.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import json
import logging
import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import MappingProxyType
from typing import Any

from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from stageconfig._snapshot_codec import config_fields
from stageconfig._store import ConfigSnapshot, SnapshotSource, SnapshotStore, StoreUpdate
from stageconfig._types import (
    ConfigSource,
    ConfigStatus,
    ProviderKind,
    Route,
    StageConfig,
    StageType,
)
from stageconfig.errors import CacheFileError

CACHE_KEY_ENV = "STAGECONFIG_CACHE_KEY"
"""The environment variable holding the secret the file's keys are encrypted with."""

FORMAT = "stageconfig-last-known-good/1"
_CHECKSUM_PREFIX = "hmac-sha256:"
_HKDF_SALT = b"stageconfig/v1/cache-file-salt"
_INFO_ENCRYPTION = b"stageconfig/v1/cache-file-encryption"
_INFO_CHECKSUM = b"stageconfig/v1/cache-file-checksum"
FILE_MODE = 0o600

log = logging.getLogger("stageconfig.client")


def _derive(secret: str, info: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=_HKDF_SALT, info=info).derive(
        secret.encode("utf-8")
    )


@dataclass(frozen=True, slots=True)
class CachedState:
    """What the file holds."""

    revision: int
    target: str
    stages: frozenset[StageType]
    configs: tuple[StageConfig, ...]
    written_at: datetime


class CacheFile:
    """Reads and atomically writes one last-known-good file."""

    def __init__(self, path: str | os.PathLike[str], secret: str) -> None:
        if not secret:
            raise CacheFileError(f"{CACHE_KEY_ENV} is empty: the cache file cannot be encrypted")
        self.path = Path(path)
        self._fernet = Fernet(base64.urlsafe_b64encode(_derive(secret, _INFO_ENCRYPTION)))
        self._mac_key = _derive(secret, _INFO_CHECKSUM)

    def __repr__(self) -> str:
        return f"CacheFile({str(self.path)!r}, <key hidden>)"

    # -- reading ---------------------------------------------------------------------------

    def load(self) -> CachedState | None:
        """The file's state; None when there is no file. Raises CacheFileError when it
        cannot be read, is malformed, was tampered with or written under another key."""
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise CacheFileError(f"cannot read {self.path}: {exc.strerror}") from exc
        try:
            document = json.loads(raw)
            if not isinstance(document, dict):
                raise TypeError("not a JSON object")
            checksum = document.pop("checksum", None)
        except (ValueError, TypeError) as exc:
            raise CacheFileError(f"{self.path} is not a stageconfig cache file: {exc}") from exc
        if document.get("format") != FORMAT:
            raise CacheFileError(f"{self.path} has format {document.get('format')!r}, not {FORMAT}")
        if not isinstance(checksum, str) or not hmac.compare_digest(
            checksum, self._checksum(document)
        ):
            raise CacheFileError(
                f"{self.path} fails its checksum: it was modified, truncated, or written "
                f"with another {CACHE_KEY_ENV}"
            )
        try:
            return CachedState(
                revision=int(document["revision"]),
                target=str(document["target"]),
                stages=frozenset(StageType(s) for s in document["stages"]),
                configs=tuple(self._config_from_json(c) for c in document["configs"]),
                written_at=datetime.fromisoformat(document["written_at"]),
            )
        except InvalidToken as exc:
            raise CacheFileError(f"a key in {self.path} cannot be decrypted") from exc
        except (KeyError, ValueError, TypeError) as exc:
            raise CacheFileError(f"{self.path} is malformed: {exc!r}") from exc

    def _config_from_json(self, data: Mapping[str, Any]) -> StageConfig:
        return StageConfig(
            stage_type=StageType(data["stage_type"]),
            provider_kind=ProviderKind(data["provider_kind"]),
            api_key=self._fernet.decrypt(data["api_key_encrypted"].encode("ascii")).decode(),
            model=str(data["model"]),
            revision=int(data["revision"]),
            status=ConfigStatus(data["status"]),
            source=ConfigSource(data["source"]),
            options=MappingProxyType({str(k): str(v) for k, v in data["options"].items()}),
            status_reason=str(data["status_reason"]),
            api_key_masked=bool(data["api_key_masked"]),
            api_key_fingerprint=str(data["api_key_fingerprint"]),
            updated_at=_time(data.get("updated_at")),
            models_cache_updated_at=_time(data.get("models_cache_updated_at")),
            # A file written before fallback routes has none.
            fallbacks=tuple(self._route_from_json(r) for r in data.get("fallbacks", ())),
        )

    def _route_from_json(self, data: Mapping[str, Any]) -> Route:
        return Route(
            provider_kind=ProviderKind(data["provider_kind"]),
            api_key=self._fernet.decrypt(data["api_key_encrypted"].encode("ascii")).decode(),
            model=str(data["model"]),
            options=MappingProxyType({str(k): str(v) for k, v in data["options"].items()}),
            status=ConfigStatus(data["status"]),
            api_key_masked=bool(data["api_key_masked"]),
            api_key_fingerprint=str(data["api_key_fingerprint"]),
            index=int(data.get("index", 0)),
        )

    # -- writing ---------------------------------------------------------------------------

    def save(self, state: CachedState) -> None:
        """Write ``state`` atomically (temp file, fsync, rename, directory fsync)."""
        document: dict[str, Any] = {
            "format": FORMAT,
            "revision": state.revision,
            "target": state.target,
            "stages": sorted(s.value for s in state.stages),
            "written_at": state.written_at.isoformat(),
            "configs": [self._config_to_json(c) for c in state.configs],
        }
        document["checksum"] = self._checksum(document)
        data = json.dumps(document, indent=1, sort_keys=True).encode("utf-8")
        directory = self.path.parent
        try:
            directory.mkdir(parents=True, exist_ok=True, mode=0o700)
            # mkstemp creates the file 0600 and exclusively, so concurrent writers (every
            # worker process of a host) never share a temp file.
            fd, temp_name = tempfile.mkstemp(
                prefix=f".{self.path.name}.", suffix=".tmp", dir=directory
            )
            try:
                with os.fdopen(fd, "wb") as temp:
                    os.fchmod(temp.fileno(), FILE_MODE)
                    temp.write(data)
                    temp.flush()
                    os.fsync(temp.fileno())
                os.replace(temp_name, self.path)
            except BaseException:
                with contextlib.suppress(OSError):
                    os.unlink(temp_name)
                raise
            _fsync_directory(directory)
        except OSError as exc:
            raise CacheFileError(f"cannot write {self.path}: {exc.strerror or exc}") from exc

    def _config_to_json(self, config: StageConfig) -> dict[str, Any]:
        encrypted = self._fernet.encrypt(config.api_key.encode()).decode("ascii")
        return {
            **config_fields(config, {"api_key_encrypted": encrypted}),
            "fallbacks": [self._route_to_json(r) for r in config.fallbacks],
        }

    def _route_to_json(self, route: Route) -> dict[str, Any]:
        return {
            "provider_kind": route.provider_kind.value,
            "api_key_encrypted": self._fernet.encrypt(route.api_key.encode()).decode("ascii"),
            "model": route.model,
            "options": dict(route.options),
            "status": route.status.value,
            "api_key_masked": route.api_key_masked,
            "api_key_fingerprint": route.api_key_fingerprint,
            "index": route.index,
        }

    def _checksum(self, document: Mapping[str, Any]) -> str:
        canonical = json.dumps(document, sort_keys=True, separators=(",", ":")).encode("utf-8")
        digest = hmac.new(self._mac_key, canonical, hashlib.sha256).hexdigest()
        return _CHECKSUM_PREFIX + digest


def _time(value: object) -> datetime | None:
    return datetime.fromisoformat(value) if isinstance(value, str) else None


def _fsync_directory(directory: Path) -> None:
    # The rename is durable only once the directory entry is on disk.
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class LastKnownGood:
    """One client's last-known-good file, tied to the replica set and stages it watches."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        secret: str | None,
        *,
        targets: tuple[str, ...],
        stages: frozenset[StageType],
    ) -> None:
        secret = secret if secret is not None else os.environ.get(CACHE_KEY_ENV, "")
        if not secret:
            raise CacheFileError(
                f"cache_path is set but {CACHE_KEY_ENV} is not: the last-known-good "
                "file holds API keys and is only ever written encrypted. Set "
                f"{CACHE_KEY_ENV} (a long random secret shared by the workers of the "
                "host) or drop cache_path."
            )
        self._file = CacheFile(path, secret)
        # The file names the replica set it came from, not the replica of the day.
        self._targets_key = ",".join(targets)
        self._stages = stages

    @property
    def path(self) -> Path:
        """Where the file lives."""
        return self._file.path

    def restore(self, store: SnapshotStore) -> tuple[StoreUpdate, CachedState] | None:
        """Put the file's state into ``store``: the update and what the file held; None
        when there is no file or it is unusable (logged)."""
        try:
            cached = self._file.load()
        except CacheFileError as exc:
            log.warning("ignoring the last-known-good file: %s", exc)
            return None
        if cached is None:
            return None
        update = store.replace(cached.revision, cached.configs, SnapshotSource.CACHE)
        log.info(
            "serving the last-known-good config of %s (revision %d, written %s) until the "
            "server answers",
            self.path,
            cached.revision,
            cached.written_at.isoformat(),
        )
        return update, cached

    def resumable(self, state: CachedState) -> bool:
        """Whether a stream may resume from the file's revision: only when it describes
        this replica set and every stage watched; otherwise its revision says nothing
        about what the client would miss."""
        return state.target == self._targets_key and self._stages <= state.stages

    def save(self, snapshot: ConfigSnapshot) -> None:
        """Write ``snapshot`` (a failure is logged)."""
        state = CachedState(
            revision=snapshot.revision,
            target=self._targets_key,
            stages=self._stages,
            configs=tuple(snapshot.configs[s] for s in sorted(snapshot.configs)),
            written_at=datetime.now(UTC),
        )
        try:
            self._file.save(state)
        except CacheFileError as exc:
            log.warning("could not write the last-known-good file: %s", exc)
