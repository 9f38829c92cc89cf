"""What ConfigClient listeners receive — its states and config changes — and how they
receive it: in order, on the client's threads, their exceptions logged and ignored."""

from __future__ import annotations

import enum
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from stageconfig._store import ConfigSnapshot, SnapshotSource, StageChange, StoreUpdate
from stageconfig._types import StageType
from stageconfig.errors import StageConfigError


class ClientState(enum.StrEnum):
    """Where a ConfigClient stands.

    CONNECTING → READY ⇄ STALE; FATAL and CLOSED are final (a forked child starts over).
    """

    CONNECTING = "CONNECTING"
    """Started, with no config to serve yet."""
    READY = "READY"
    """Serving config the server confirms: a stream is open and spoke within the last
    three heartbeat periods, or is being re-established within the stale grace (2 s)."""
    STALE = "STALE"
    """Serving the last known config, which the server has not confirmed lately (its
    stream has been down for the grace, or silent for three heartbeats, or the config
    came from the last-known-good file); reconnecting."""
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


ChangeListener = Callable[[ConfigChangeEvent], None]
StateListener = Callable[[StateChange], None]
_Event = TypeVar("_Event", ConfigChangeEvent, StateChange)

log = logging.getLogger("stageconfig.client")


class Listeners:
    """A client's ``on_change`` and ``on_state`` listeners.

    One dispatch lock orders every announcement, so listeners see changes and
    transitions in the order they happened, whichever thread made them.
    """

    def __init__(self) -> None:
        self._change: list[ChangeListener] = []
        self._state: list[StateListener] = []
        self.reset_after_fork()

    def reset_after_fork(self) -> None:
        """Fresh locks (another thread may have held them at fork time); the listeners
        stay."""
        self._lock = threading.Lock()
        self._dispatch_lock = threading.RLock()

    def add_change(self, listener: ChangeListener) -> Callable[[], None]:
        """Register ``listener``; returns a function that removes it."""
        return self._add(self._change, listener)

    def add_state(self, listener: StateListener) -> Callable[[], None]:
        """Register ``listener``; returns a function that removes it."""
        return self._add(self._state, listener)

    def publish_change(self, update: StoreUpdate) -> None:
        """Call every change listener with what ``update`` changed (nothing: no call)."""
        if not update.changes:
            return
        event = ConfigChangeEvent(update.snapshot.revision, update.changes, update.snapshot)
        with self._dispatch_lock:
            self._call(self._change, event)

    def publish_state(self, transition: Callable[[], StateChange | None]) -> None:
        """Run ``transition`` (which moves the state, or answers None when it stays) and
        call every state listener with what it answered; the dispatch lock spans both."""
        with self._dispatch_lock:
            event = transition()
            if event is not None:
                self._call(self._state, event)

    def _add(
        self, listeners: list[Callable[[_Event], None]], listener: Callable[[_Event], None]
    ) -> Callable[[], None]:
        with self._lock:
            listeners.append(listener)

        def remove() -> None:
            with self._lock:
                if listener in listeners:
                    listeners.remove(listener)

        return remove

    def _call(self, listeners: list[Callable[[_Event], None]], event: _Event) -> None:
        with self._lock:
            current = list(listeners)
        for listener in current:
            try:
                listener(event)
            except Exception:
                what = "change" if isinstance(event, ConfigChangeEvent) else "state"
                log.exception("stageconfig %s listener failed", what)
