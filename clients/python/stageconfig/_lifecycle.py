"""The threads of one ConfigClient and their life across ``start()``, ``fork()`` and
``close()``.

Three daemon threads per started client: *watch* (``_watcher``: the stream),
*watchdog* (``_liveness``: silence into STALE) and *report* (``_reporter``: status
reports to the server). All wait on ``threading.Event``s, so ``close()`` interrupts them
at once.

This is where the fork-safety promise of ``stageconfig._client`` is kept: an
``os.register_at_fork`` hook (and a pid check, for forks that bypass it) gives every
live client in a child fresh locks and no threads, keeps the parent's grpc objects
referenced but untouched, and lets the child's next call start its own threads.
"""

from __future__ import annotations

import os
import threading
import weakref
from collections.abc import Callable

from stageconfig.errors import ClientClosedError

_JOIN_SECONDS = 5.0

_LIVE: weakref.WeakSet[Lifecycle] = weakref.WeakSet()
_FORK_ORPHANS: list[object] = []
"""grpc objects a forked child inherited: kept referenced so they are never collected
(and so never closed) in the child, where touching them is undefined."""


def _reset_in_child() -> None:
    for lifecycle in list(_LIVE):
        lifecycle.reset_after_fork()


os.register_at_fork(after_in_child=_reset_in_child)


class Lifecycle:
    """Whether a client was started or closed, and its threads in this process.

    ``watch``, ``watchdog`` and ``report`` are the threads' bodies (they get the stop
    event);
    ``forget_process`` resets everything else of the client that must not cross a
    fork and returns the grpc objects it abandoned.
    """

    def __init__(
        self,
        name: Callable[[], str],
        watch: Callable[[threading.Event], None],
        watchdog: Callable[[threading.Event], None],
        report: Callable[[threading.Event], None],
        forget_process: Callable[[], object],
    ) -> None:
        self._name = name
        self._bodies = (("watch", watch), ("watchdog", watchdog), ("report", report))
        self._forget_process = forget_process
        self.started = False
        self.closed = False
        self._init_process_state()
        _LIVE.add(self)

    def _init_process_state(self) -> None:
        self._pid = os.getpid()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def reset_after_fork(self) -> None:
        """In a forked child: drop the parent's threads and grpc objects, keep the data,
        and let the next call start over."""
        self._init_process_state()
        _FORK_ORPHANS.append(self._forget_process())

    def ensure_process(self) -> None:
        """Notice a fork that bypassed ``os.fork``'s hooks, and (re)start the threads of
        a started client that has none in this process."""
        if os.getpid() != self._pid:
            self.reset_after_fork()
        if self.started and not self.closed and not self._threads:
            self.spawn()

    def start(self) -> bool:
        """Mark the client started; True for the call that did it (which then calls
        ``spawn``). ClientClosedError once closed."""
        with self._lock:
            if self.closed:
                raise ClientClosedError("the client was closed")
            if self.started:
                return False
            self.started = True
            return True

    def close(self) -> list[threading.Thread] | None:
        """Mark the client closed and set the stop event; the threads to join, or None
        when it was closed already."""
        if os.getpid() != self._pid:
            self.reset_after_fork()
        with self._lock:
            if self.closed:
                return None
            self.closed = True
            self._stop.set()
            threads = list(self._threads)
        _LIVE.discard(self)
        return threads

    @staticmethod
    def join(threads: list[threading.Thread]) -> None:
        """Wait for ``threads`` to end — unless called from one of them (a listener that
        closes the client): joining the other one could wait on the dispatch lock this
        thread holds, so the threads just finish on their own."""
        if threading.current_thread() in threads:
            return
        for thread in threads:
            thread.join(_JOIN_SECONDS)

    def spawn(self) -> None:
        """Start the threads (once per process)."""
        with self._lock:
            if self._threads or self.closed:
                return
            self._threads = [
                threading.Thread(
                    target=body,
                    args=(self._stop,),
                    name=f"stageconfig-{role}[{self._name()}]",
                    daemon=True,
                )
                for role, body in self._bodies
            ]
            threads = list(self._threads)
        for thread in threads:
            thread.start()
