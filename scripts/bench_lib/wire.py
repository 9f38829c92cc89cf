"""What the client processes put on the wire, shared so every system is driven alike.

Every system is called through plain generated-message multicallables on grpc.aio
channels (etcd's through the ``etcdserverpb`` messages that aetcd ships), so the
client-side work per call or per event is the same code for stageconfig, the bare
floor server and etcd; only the method and the messages differ.
"""

from __future__ import annotations

from typing import Any

from aetcd.rpc import rpc_pb2 as etcd

from stageconfig._channel import DEFAULT_OPTIONS as CLIENT_OPTIONS
from stageconfig_contract.v1 import stage_config_pb2 as pb

__all__ = [
    "CLIENT_OPTIONS",
    "ETCD_KEY",
    "ETCD_PUT",
    "ETCD_RANGE",
    "ETCD_WATCH",
    "GET_ACTIVE",
    "UPDATE_CONFIG",
    "WATCH_CONFIG",
    "channel_options",
    "etcd",
    "pb",
]

_SERVICE = "/stageconfig.v1.StageConfigService"
GET_ACTIVE = f"{_SERVICE}/GetActiveConfig"
UPDATE_CONFIG = f"{_SERVICE}/UpdateConfig"
WATCH_CONFIG = f"{_SERVICE}/WatchConfig"

ETCD_RANGE = "/etcdserverpb.KV/Range"
ETCD_PUT = "/etcdserverpb.KV/Put"
ETCD_WATCH = "/etcdserverpb.Watch/Watch"
ETCD_KEY = b"/stageconfig/stages/VOICE"
"""The one etcd key the etcd side reads and watches: a VOICE config."""


def channel_options(channel_id: int) -> list[tuple[str, Any]]:
    """The Python client's channel options plus a unique ``grpc.channel_id``.

    grpc shares subchannels (and so TCP connections) between channels whose arguments
    are identical; a distinct argument and a channel-local subchannel pool give each
    simulated worker its own connection, as separate worker processes would have. The
    options are the client library's own (keepalive, reconnect backoff), so reconnects
    behave as a worker's.
    """
    return [
        *CLIENT_OPTIONS,
        ("grpc.channel_id", channel_id),
        ("grpc.use_local_subchannel_pool", 1),
    ]
