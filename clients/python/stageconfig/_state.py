"""The client's state (CONNECTING, READY, STALE, FATAL, CLOSED): derived from the facts
on every refresh, announced to ``on_state`` listeners once per transition and in order,
and waited on by ``wait_ready``."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from stageconfig._events import ClientState, Listeners, StateChange
from stageconfig.errors import StageConfigError

log = logging.getLogger("stageconfig.client")

SETTLED: frozenset[ClientState] = frozenset(
    {ClientState.READY, ClientState.FATAL, ClientState.CLOSED}
)
"""The states a ``wait_ready`` stops waiting in."""


class StateTracker:
    """Holds the current state; ``refresh`` re-derives it and announces a change.

    ``derive`` computes the state from the facts (closed, refused, config held, the
    server's liveness); ``last_error`` is attached to every transition away from READY;
    ``name`` says whose state it is in the log.
    """

    def __init__(
        self,
        derive: Callable[[], ClientState],
        listeners: Listeners,
        last_error: Callable[[], StageConfigError | None],
        name: Callable[[], str],
    ) -> None:
        self._derive = derive
        self._listeners = listeners
        self._last_error = last_error
        self._name = name
        self._state = ClientState.CONNECTING
        self.reset_after_fork()

    def reset_after_fork(self) -> None:
        """A fresh lock (another thread may have held it at fork time); the state is
        re-derived without an announcement."""
        self._cond = threading.Condition(threading.Lock())
        self._state = self._derive()

    @property
    def state(self) -> ClientState:
        """The current state."""
        return self._state

    def refresh(self) -> None:
        """Re-derive the state; on a transition, wake the waiters and tell the listeners."""
        self._listeners.publish_state(self._transition)

    def wait_settled(self, timeout: float | None) -> ClientState:
        """Block until the state is READY, FATAL or CLOSED, or ``timeout`` passes; the
        state then."""
        with self._cond:
            self._cond.wait_for(lambda: self._state in SETTLED, timeout)
            return self._state

    def _transition(self) -> StateChange | None:
        with self._cond:
            previous = self._state
            state = self._derive()
            if state is previous:
                return None
            self._state = state
            self._cond.notify_all()
        error = self._last_error() if state is not ClientState.READY else None
        log.info("stageconfig client of %s: %s -> %s", self._name(), previous, state)
        return StateChange(previous, state, error)
