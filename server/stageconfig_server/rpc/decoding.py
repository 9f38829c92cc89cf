"""Requests that do not decode: INVALID_ARGUMENT, never UNKNOWN with a traceback.

grpc.aio calls a method's request deserializer inside the framework, before the
servicer runs: a ``DecodeError`` there (corrupt wire format, invalid UTF-8 in a string
field, nesting deeper than protobuf allows) would end the call as UNKNOWN and log an
ERROR traceback per call. ``guarded_deserializer`` catches it and hands the servicer an
``Undecodable`` marker instead; ``reject_undecodable`` wraps the method's behaviour so
the marker becomes INVALID_ARGUMENT (through ``rpc/status.py``'s table) naming the first
top-level field that fails to decode, logged at INFO through the rate-limited
``RefusalLog`` (no traceback: the bytes are the caller's mistake, not a bug).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from google.protobuf.message import DecodeError, Message

from stageconfig_server.errors import InvalidArgument
from stageconfig_server.rpc.refusals import RefusalLog
from stageconfig_server.rpc.status import abort_with_error

_MAX_FIELDS_EXAMINED = 256
"""Finding the failing field re-parses each top-level field alone: bounded, so a
request of a million tiny fields costs no more than a few hundred parses."""


@dataclass(frozen=True, slots=True)
class Undecodable:
    """What the servicer would have received: the request did not decode."""

    message_type: str
    field: str
    """The first top-level field that does not decode alone ("" when none can be named)."""


def guarded_deserializer(message_cls: Any) -> Callable[[bytes], Any]:
    """``message_cls.FromString``, with a DecodeError turned into ``Undecodable``."""
    parse: Callable[[bytes], Any] = message_cls.FromString
    name: str = message_cls.DESCRIPTOR.full_name

    def deserialize(data: bytes) -> Any:
        try:
            return parse(data)
        except (DecodeError, RecursionError, ValueError):
            # upb raises DecodeError; the pure-Python runtime may raise the others.
            return Undecodable(name, _failing_field(message_cls, data))

    return deserialize


def reject_undecodable(behaviour: Any, refusals: RefusalLog, method: str) -> Any:
    """Wrap a method's behaviour: an ``Undecodable`` request gets INVALID_ARGUMENT."""

    async def checked(request: Any, context: Any) -> Any:
        if isinstance(request, Undecodable):
            refusals.refused(
                "undecodable_request",
                logging.INFO,
                "refused %s from %s: the request is not a valid %s (field %s)",
                method,
                context.peer(),
                request.message_type,
                request.field or "unknown",
            )
            await abort_with_error(
                context,
                InvalidArgument(
                    request.field,
                    f"the request is not a valid {request.message_type} message "
                    "(corrupt wire format, invalid UTF-8 in a string, or nesting too deep)",
                ),
            )
        return await behaviour(request, context)

    return checked


def _failing_field(message_cls: Any, data: bytes) -> str:
    """The name of the first top-level field whose bytes do not decode on their own."""
    fields = message_cls.DESCRIPTOR.fields_by_number
    position = 0
    for _ in range(_MAX_FIELDS_EXAMINED):
        if position >= len(data):
            return ""
        start = position
        tag = -1
        try:
            tag, position = _varint(data, position)
            number, wire_type = tag >> 3, tag & 7
            position = _skip(data, position, wire_type)
        except ValueError:
            field = fields.get(tag >> 3) if tag >= 0 else None
            return field.name if field is not None else ""
        field = fields.get(number)
        if field is None:
            continue
        try:
            message: Message = message_cls()
            message.MergeFromString(data[start:position])
        except (DecodeError, RecursionError, ValueError):
            return str(field.name)
    return ""


def _varint(data: bytes, position: int) -> tuple[int, int]:
    result = shift = 0
    while position < len(data) and shift < 64:
        byte = data[position]
        position += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, position
        shift += 7
    raise ValueError("truncated or overlong varint")


def _skip(data: bytes, position: int, wire_type: int) -> int:
    """The position after one field's value of ``wire_type`` (ValueError if malformed)."""
    if wire_type == 0:
        return _varint(data, position)[1]
    if wire_type == 1:
        end = position + 8
    elif wire_type == 5:
        end = position + 4
    elif wire_type == 2:
        length, position = _varint(data, position)
        end = position + length
    else:  # groups (3, 4) are not proto3; 6 and 7 do not exist
        raise ValueError(f"wire type {wire_type}")
    if end > len(data):
        raise ValueError("truncated")
    return end


__all__ = ["Undecodable", "guarded_deserializer", "reject_undecodable"]
