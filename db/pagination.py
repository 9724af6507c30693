"""Keyset pagination shared by every list: opaque cursors over one unique sort key."""

from __future__ import annotations

import base64
import json
from typing import Any

import peewee

from hub.core.problems import ValidationFailed


def encode_cursor(value: Any) -> str:
    raw = json.dumps({"k": value}, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _invalid() -> ValidationFailed:
    return ValidationFailed(
        "The cursor is not one this server issued.",
        errors=[{"field": "query.cursor", "message": "invalid cursor"}],
    )


def decode_cursor(cursor: str, expected: type) -> Any:
    """The key value inside a cursor; 400 unless it is of the ``expected`` type."""
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        value = json.loads(base64.urlsafe_b64decode(padded.encode()).decode())["k"]
    except (ValueError, KeyError, TypeError, UnicodeError) as exc:
        raise _invalid() from exc
    if type(value) is not expected:  # bool is an int subclass: compare exact types
        raise _invalid()
    return value


def page(
    query: peewee.Select,
    key: peewee.Field,
    *,
    limit: int = 50,
    cursor: str | None = None,
    descending: bool = False,
) -> tuple[list, str | None]:
    """One page of ``query`` ordered by the unique ``key``; returns (rows, next_cursor)."""
    if cursor:
        integer = isinstance(key, peewee.IntegerField | peewee.AutoField)
        last = decode_cursor(cursor, int if integer else str)
        query = query.where(key < last if descending else key > last)
    query = query.order_by(key.desc() if descending else key.asc()).limit(limit + 1)
    rows = list(query)
    if len(rows) <= limit:
        return rows, None
    rows = rows[:limit]
    return rows, encode_cursor(getattr(rows[-1], key.name))
