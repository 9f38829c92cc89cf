"""Offline operations on the database: the legacy env import and key rotation.

Both run next to a serving server: every write is its own ``BEGIN IMMEDIATE``
transaction, and a running server keeps its decrypted view, so nothing stops.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from stageconfig_contract.facts import mask_key
from stageconfig_server.app import build_service, open_storage
from stageconfig_server.domain import StageType
from stageconfig_server.errors import KeyRejected, StageConfigError
from stageconfig_server.fallback import fallback_config
from stageconfig_server.settings import LegacySettings, Settings

log = logging.getLogger(__name__)

IMPORT_ACTOR = "import-env"


@dataclass(frozen=True, slots=True)
class ImportLine:
    """What the import did (or would do) for one stage."""

    stage_type: StageType
    action: str  # "imported", "would import", "skipped: …", "failed: …"
    provider: str = ""
    model: str = ""
    masked_key: str = ""

    def __str__(self) -> str:
        what = f" {self.provider} {self.model} key {self.masked_key}" if self.provider else ""
        return f"{self.stage_type.value}: {self.action}{what}"


async def import_env(settings: Settings, legacy: LegacySettings, dry_run: bool) -> list[ImportLine]:
    """Store the legacy env config of every stage that has no stored config.

    Idempotent: a stage that has a row is left alone. Keys are verified with the
    provider like any update; a rejected key is reported and not imported.
    """
    engine, repository, cipher = await open_storage(settings)
    try:
        service = build_service(settings, repository, cipher, legacy)
        await service.load()
        stored = {
            view.stage_type for view in service.list_configs() if view.source.value == "DATABASE"
        }
        lines = []
        for stage in StageType:
            config = fallback_config(legacy, stage)
            if stage in stored:
                lines.append(ImportLine(stage, "skipped: a config is already stored"))
                continue
            if config is None:
                lines.append(ImportLine(stage, "skipped: no legacy setting"))
                continue
            described = {
                "provider": config.provider_kind.value,
                "model": config.model,
                "masked_key": mask_key(config.api_key),
            }
            if dry_run:
                lines.append(ImportLine(stage, "would import", **described))
                continue
            try:
                result = await service.import_config(config, actor=IMPORT_ACTOR)
            except KeyRejected as exc:
                lines.append(ImportLine(stage, f"failed: {exc.message}", **described))
                continue
            except StageConfigError as exc:
                lines.append(ImportLine(stage, f"failed: {exc.message}", **described))
                continue
            if result is None:
                lines.append(ImportLine(stage, "skipped: a config is already stored"))
            else:
                described["model"] = result.model
                lines.append(
                    ImportLine(stage, f"imported at revision {result.revision}", **described)
                )
        return lines
    finally:
        await engine.dispose()


async def rotate_keys(settings: Settings) -> int:
    """Re-encrypt every stored ciphertext under the current ADMIN_SECRET_KEY.

    Returns the number of values rewritten. Run with the new secret in
    ADMIN_SECRET_KEY and the old one in ADMIN_SECRET_KEY_PREVIOUS.
    """
    engine, repository, cipher = await open_storage(settings)
    try:
        return await repository.reencrypt(cipher.rotate)
    finally:
        await engine.dispose()
