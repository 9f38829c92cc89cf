"""WatchConfig's wire form: the proto encoder the broadcaster is given.

The broadcaster (``broadcast.py``) decides what each stream carries and when; this
module only turns a change, a snapshot or a heartbeat into the serialized
``WatchConfigResponse`` bytes. The broadcaster calls it once per change and audience,
never once per watcher, and writes the same bytes to every stream of that audience.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from stageconfig_contract.v1 import stage_config_pb2 as pb
from stageconfig_server.domain import StageConfig
from stageconfig_server.rpc.convert import config_to_pb, reason_to_pb, timestamp
from stageconfig_server.service import ConfigChange


class ProtoWatchEncoder:
    """Serializes WatchConfig messages (``broadcast.WatchEncoder``) as protobuf."""

    def change(self, change: ConfigChange, *, reveal_keys: bool) -> bytes:
        """A ``change`` message: plaintext key for workers, masked for admins."""
        return pb.WatchConfigResponse(
            change=pb.Change(
                revision=change.revision,
                config=config_to_pb(change.config, reveal_key=reveal_keys),
                reason=reason_to_pb(change.reason),
            )
        ).SerializeToString()

    def snapshot(
        self, revision: int, configs: Sequence[StageConfig], *, reveal_keys: bool
    ) -> bytes:
        """A ``snapshot`` message of ``configs`` at ``revision``."""
        return pb.WatchConfigResponse(
            snapshot=pb.Snapshot(
                revision=revision,
                configs=[config_to_pb(c, reveal_key=reveal_keys) for c in configs],
            )
        ).SerializeToString()

    def heartbeat(self, head_revision: int, server_time: datetime) -> bytes:
        """A ``heartbeat`` message promising everything up to ``head_revision``."""
        message = pb.WatchConfigResponse(heartbeat=pb.Heartbeat(head_revision=head_revision))
        if (ts := timestamp(server_time)) is not None:
            message.heartbeat.server_time.CopyFrom(ts)
        return message.SerializeToString()


__all__ = ["ProtoWatchEncoder"]
