"""How many server streams one peer and one token may hold at once.

Each WatchConfig stream costs the server a watcher, a task and (for a reader that
stops) one buffered message; nothing else stopped a single connection from holding
thousands. ``StreamLimits`` counts open streams per peer (grpc's peer string: address
and port, i.e. one client connection) and per token name, and answers
RESOURCE_EXHAUSTED (through ``rpc/status.py``) beyond ``STAGECONFIG_MAX_STREAMS_PER_PEER``
or ``STAGECONFIG_MAX_STREAMS_PER_TOKEN``; 0 turns a limit off. Refusals are logged
through the rate-limited ``RefusalLog``.
"""

from __future__ import annotations

import collections
import logging
from collections.abc import Callable
from typing import Any

from stageconfig_server.errors import ResourceExhausted
from stageconfig_server.rpc.identity import Caller
from stageconfig_server.rpc.refusals import RefusalLog
from stageconfig_server.rpc.status import abort_with_error

DEFAULT_MAX_STREAMS_PER_PEER = 64
DEFAULT_MAX_STREAMS_PER_TOKEN = 10_000


class StreamLimits:
    """Counts open streams per peer and per token; refuses those beyond the limits."""

    def __init__(
        self,
        caller_of: Callable[[Any], Caller],
        refusals: RefusalLog,
        *,
        per_peer: int = DEFAULT_MAX_STREAMS_PER_PEER,
        per_token: int = DEFAULT_MAX_STREAMS_PER_TOKEN,
    ) -> None:
        self._caller_of = caller_of
        self._refusals = refusals
        self._per_peer = per_peer
        self._per_token = per_token
        self._by_peer: collections.Counter[str] = collections.Counter()
        self._by_token: collections.Counter[str] = collections.Counter()

    def open_streams(self, peer: str) -> int:
        """How many streams ``peer`` holds now."""
        return self._by_peer[peer]

    def _refusal(self, peer: str, token: str) -> str | None:
        if self._per_peer and self._by_peer[peer] >= self._per_peer:
            return (
                f"this connection already holds {self._per_peer} streams "
                "(STAGECONFIG_MAX_STREAMS_PER_PEER); close some or open another connection"
            )
        if self._per_token and self._by_token[token] >= self._per_token:
            return (
                f"token {token!r} already holds {self._per_token} streams "
                "(STAGECONFIG_MAX_STREAMS_PER_TOKEN)"
            )
        return None

    def limit(self, behaviour: Any, method: str) -> Any:
        """Wrap a streaming method's behaviour with the limits."""

        async def limited(request: Any, context: Any) -> Any:
            peer = context.peer()
            token = self._caller_of(context).name
            refusal = self._refusal(peer, token)
            if refusal is not None:
                self._refusals.refused(
                    "stream_limit",
                    logging.WARNING,
                    "refused %s from %s (token %r): %s",
                    method,
                    peer,
                    token,
                    refusal,
                )
                await abort_with_error(context, ResourceExhausted(refusal))
            # No await between the check and the count: the check cannot go stale.
            self._by_peer[peer] += 1
            self._by_token[token] += 1
            try:
                return await behaviour(request, context)
            finally:
                _release(self._by_peer, peer)
                _release(self._by_token, token)

        return limited


def _release(counter: collections.Counter[str], key: str) -> None:
    counter[key] -= 1
    if counter[key] <= 0:
        del counter[key]  # peers come and go: keep no entry for a closed connection


__all__ = ["DEFAULT_MAX_STREAMS_PER_PEER", "DEFAULT_MAX_STREAMS_PER_TOKEN", "StreamLimits"]
