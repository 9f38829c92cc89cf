"""What one WatchConfig message does to the held config — including the messages of a
newer server that this client cannot fully read.

Protobuf lets old readers survive new writers, and so does this client: an unknown
status, cause, source or reason is read as UNSPECIFIED (``_convert``); a config whose
stage or provider kind is unknown cannot be represented, so that stage keeps the config
it had (or stays unconfigured) while the revision still advances — the stream, the
state and the other stages carry on. Each such config is reported by one WARNING naming
the stage, the value and the revision, not once per heartbeat or reconnect, and refused
(NACKed in the client's reports) like a config a validator rejects.

Every other new config passes the client's validators first (``_validation.Gate``): a
refused one is not applied, the stage keeps its config, the revision still advances.
"""

from __future__ import annotations

import logging

from stageconfig._convert import UnrepresentableConfig, config_from_pb
from stageconfig._store import SnapshotSource, SnapshotStore, StoreUpdate
from stageconfig._types import StageConfig, StageType
from stageconfig._validation import Gate
from stageconfig_contract.v1 import stage_config_pb2 as pb

log = logging.getLogger("stageconfig.client")


class MessageApplier:
    """Applies WatchConfig messages to a SnapshotStore, reading what it can."""

    def __init__(self, store: SnapshotStore, gate: Gate) -> None:
        self._store = store
        self._gate = gate
        self._reported: set[tuple[StageType | None, str, int, int]] = set()

    def apply(self, message: pb.WatchConfigResponse, target: str) -> StoreUpdate | None:
        """Apply ``message`` (from ``target``); the store's update, None when nothing
        moved. A kind of message this client does not know changes nothing."""
        kind = message.WhichOneof("event")
        if kind == "snapshot":
            return self._snapshot(message.snapshot, target)
        if kind == "change":
            config = self._read(message.change.config, target)
            if config is None or not self._admit(config):
                return self._store.advance(message.change.revision, SnapshotSource.CHANGE)
            return self._store.apply(message.change.revision, config)
        if kind == "heartbeat":
            return self._store.advance(message.heartbeat.head_revision)
        return None

    def _snapshot(self, snapshot: pb.Snapshot, target: str) -> StoreUpdate:
        current = self._store.current
        if (
            current is not None
            and current.source is not SnapshotSource.CACHE
            and snapshot.revision < current.revision
        ):
            log.warning(
                "stageconfig server %s is at revision %d, below the %d this client held "
                "(database restored from a backup?): following the server",
                target,
                snapshot.revision,
                current.revision,
            )
        configs: list[StageConfig] = []
        unreadable: list[StageType] = []
        for message in snapshot.configs:
            config = self._read(message, target)
            if config is not None and self._admit(config):
                configs.append(config)
            elif (stage := StageType.from_number(message.stage_type)) is not None:
                unreadable.append(stage)  # unreadable or refused: the stage keeps its config
        return self._store.replace(
            snapshot.revision, configs, SnapshotSource.SNAPSHOT, keep=unreadable
        )

    def _admit(self, config: StageConfig) -> bool:
        current = self._store.current
        if current is not None and config.stage_type not in current.stages:
            return True  # not watched: the store ignores it anyway
        held = current.configs.get(config.stage_type) if current is not None else None
        return self._gate.admit(config, held)

    def _read(self, message: pb.StageConfig, target: str) -> StageConfig | None:
        try:
            return config_from_pb(message)
        except UnrepresentableConfig as exc:
            self._report(exc, target)
            if exc.stage is not None and exc.stage in self._store.stages:
                self._gate.refuse(exc.stage, exc.revision, str(exc))
            return None

    def _report(self, exc: UnrepresentableConfig, target: str) -> None:
        # One warning per config: the same revision comes back with every fresh snapshot
        # (a reconnect to another replica). A stage this client does not know at all is
        # reported once, whatever revisions follow: the client can never watch it.
        revision = exc.revision if exc.stage is not None else 0
        key = (exc.stage, exc.field, exc.value, revision)
        if key in self._reported:
            return
        self._reported.add(key)
        if exc.stage is None:
            outcome = "ignoring that stage"
        elif self._store.current is not None and exc.stage in self._store.current.configs:
            outcome = f"keeping the last {exc.stage} config this client could read"
        else:
            outcome = f"{exc.stage} stays unconfigured in this client"
        log.warning("stageconfig server %s: %s; %s", target, exc, outcome)
