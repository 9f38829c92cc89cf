"""``WatchStream`` (a live WatchConfig stream of ``AdminClient.watch``) and the warnings,
once per unknown value, about what a newer server sent that the admin client leaves out.
``stageconfig.admin`` re-exports ``WatchStream``."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import grpc

from stageconfig._admin_convert import watch_event_from_pb
from stageconfig._admin_types import WatchEvent
from stageconfig._convert import UnrepresentableConfig
from stageconfig.errors import translate_rpc_error

# The admin client's logger, whichever module warns: what users configure.
log = logging.getLogger("stageconfig.admin")


class LeftOutWarnings:
    """Warns once per unknown value (field and number) what a newer server sent that this
    client had to leave out; the admin tools keep working for everything else."""

    def __init__(self) -> None:
        self._warned: set[tuple[str, int]] = set()

    def __call__(self, left_out: Iterable[UnrepresentableConfig]) -> None:
        for unknown in left_out:
            if (unknown.field, unknown.value) not in self._warned:
                self._warned.add((unknown.field, unknown.value))
                log.warning("left out: %s", unknown)


class WatchStream(Iterator[WatchEvent]):
    """A live WatchConfig stream: iterate it for events, ``cancel()`` to end it (from any
    thread). Iteration ends when the stream is cancelled or its ``duration`` is over."""

    def __init__(
        self,
        call: Any,
        *,
        ends_at_deadline: bool,
        left_out: Callable[[Iterable[UnrepresentableConfig]], None] = lambda _: None,
    ) -> None:
        self._call = call
        self._ends_at_deadline = ends_at_deadline
        self._left_out = left_out
        self._cancelled = False

    def __iter__(self) -> WatchStream:
        return self

    def __next__(self) -> WatchEvent:
        while True:
            try:
                message = next(self._call)
            except grpc.RpcError as error:
                code = error.code()
                if self._cancelled and code == grpc.StatusCode.CANCELLED:
                    raise StopIteration from None
                if self._ends_at_deadline and code == grpc.StatusCode.DEADLINE_EXCEEDED:
                    raise StopIteration from None
                raise translate_rpc_error(error) from error
            try:
                event, left_out = watch_event_from_pb(message)
            except UnrepresentableConfig as unknown:
                # A change of a stage or provider kind this client cannot show: skip it,
                # the stream and every other stage go on.
                self._left_out((unknown,))
                continue
            self._left_out(left_out)
            if event is not None:
                return event

    def cancel(self) -> None:
        """End the stream; a blocked iteration stops."""
        self._cancelled = True
        self._call.cancel()

    def __enter__(self) -> WatchStream:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.cancel()
