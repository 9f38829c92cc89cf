"""Per-method RPC metrics: each method's behaviour wrapped once, when the handlers are
built (``rpc/server.py``), rather than per call by an interceptor, which would add a
coroutine and a handler object to every call of the hot path.

Unary calls are timed into ``stageconfig_rpc_duration_seconds{method,code}``; ended
streams are counted in ``stageconfig_rpc_streams_total{method,code}``. The metrics
themselves belong to ``metrics.Metrics``; only the status code is grpc's, so it is read
here.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import grpc

from stageconfig_server.metrics import Metrics

Instrument = Callable[[str, Any, bool], Any]
"""Wraps one method's behaviour once, when the handlers are built:
``(method name, behaviour, server_streaming) -> behaviour``."""


def method_instrumentation(metrics: Metrics) -> Instrument:
    """The ``Instrument`` that records every method's calls into ``metrics``."""

    def instrument(method: str, behaviour: Any, streaming: bool) -> Any:
        if streaming:
            streams = metrics.streams

            async def counted(request: Any, context: Any) -> Any:
                code = "OK"
                try:
                    return await behaviour(request, context)
                except BaseException:
                    code = _failure_code(context, "CANCELLED")
                    raise
                finally:
                    streams.labels(method, code).inc()

            return counted

        histogram = metrics.rpc_duration
        succeeded = histogram.labels(method, "OK")  # resolved once: the common case

        async def timed(request: Any, context: Any) -> Any:
            started = time.perf_counter()
            try:
                response = await behaviour(request, context)
            except BaseException:
                histogram.labels(method, _failure_code(context, "UNKNOWN")).observe(
                    time.perf_counter() - started
                )
                raise
            succeeded.observe(time.perf_counter() - started)
            return response

        return timed

    return instrument


def _failure_code(context: Any, default: str) -> str:
    """The status code a failed call ended with (``default`` when none was set)."""
    code = context.code()
    if isinstance(code, grpc.StatusCode) and code is not grpc.StatusCode.OK:
        return code.name
    return default


__all__ = ["Instrument", "method_instrumentation"]
