"""What ConfigClient listeners receive: its states and config changes."""

from __future__ import annotations

import enum
from dataclasses import dataclass

from stageconfig._store import ConfigSnapshot, SnapshotSource, StageChange
from stageconfig._types import StageType
from stageconfig.errors import StageConfigError


class ClientState(enum.StrEnum):
    """Where a ConfigClient stands.

    CONNECTING → READY ⇄ STALE; FATAL and CLOSED are final (a forked child starts over).
    """

    CONNECTING = "CONNECTING"
    """Started, with no config to serve yet."""
    READY = "READY"
    """Serving config the server confirmed within the last three heartbeat periods."""
    STALE = "STALE"
    """Serving the last known config, which the server has not confirmed lately (it is
    away, or the config came from the last-known-good file); reconnecting."""
    FATAL = "FATAL"
    """The server refused the client for good (bad token, no permission): no more
    attempts. Config already held is still served."""
    CLOSED = "CLOSED"
    """``close()`` was called."""


@dataclass(frozen=True, slots=True)
class StateChange:
    """A state transition, as ``on_state`` listeners receive it."""

    previous: ClientState
    state: ClientState
    error: StageConfigError | None = None
    """The last connection error, when there is one (always set for FATAL)."""


@dataclass(frozen=True, slots=True)
class ConfigChangeEvent:
    """Some stages' configs changed, as ``on_change`` listeners receive it."""

    revision: int
    """The revision the client is at after this change."""
    changes: tuple[StageChange, ...]
    """Each changed stage with its old and new config (None: no config)."""
    snapshot: ConfigSnapshot
    """The whole state after the change."""

    @property
    def source(self) -> SnapshotSource:
        """What delivered it: a snapshot, a (live or replayed) change, or the cache file."""
        return self.snapshot.source

    @property
    def stages(self) -> frozenset[StageType]:
        """The stages that changed."""
        return frozenset(c.stage for c in self.changes)
