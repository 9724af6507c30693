"""Keyset pagination shared by every list: opaque cursors over one unique sort key."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from typing import Any

import peewee


class InvalidCursor(ValueError):
    """A cursor this server did not issue (the edge answers 400 naming ``query.cursor``)."""


def encode_cursor(value: Any) -> str:
    raw = json.dumps({"k": value}, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _not_json(name: str):
    raise ValueError(f"{name} is not JSON")


def decode_cursor(cursor: str, expected: type) -> Any:
    """The key value inside a cursor; :class:`InvalidCursor` unless it is of ``expected``."""
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        value = json.loads(
            base64.urlsafe_b64decode(padded.encode()).decode(), parse_constant=_not_json
        )["k"]
    except (ValueError, KeyError, TypeError, UnicodeError) as exc:
        raise InvalidCursor(cursor) from exc
    if type(value) is not expected:  # bool is an int subclass: compare exact types
        raise InvalidCursor(cursor)
    if (isinstance(value, int) and not -(2**63) <= value < 2**63) or (
        isinstance(value, str) and "\x00" in value
    ):
        raise InvalidCursor(cursor)  # no key the database holds: no cursor we issued
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


def sorted_page(
    keys: list[str],
    view: Callable[[str], dict],
    *,
    limit: int = 50,
    cursor: str | None = None,
) -> dict:
    """The same envelope and cursors over something held in memory, not a query (this
    process's provider registry): ``keys`` unique and sorted, each shown through ``view``."""
    if cursor:
        last = decode_cursor(cursor, str)
        keys = [key for key in keys if key > last]
    page_keys = keys[:limit]
    more = len(keys) > limit
    return {
        "items": [view(key) for key in page_keys],
        "next_cursor": encode_cursor(page_keys[-1]) if more else None,
    }


def list_page(
    query: peewee.Select,
    key: peewee.Field,
    *,
    limit: int = 50,
    cursor: str | None = None,
    descending: bool = False,
    view: Callable[[Any], dict] | None = None,
    views: Callable[[list], list[dict]] | None = None,
) -> dict:
    """The list envelope every list operation answers: ``{"items", "next_cursor"}``; each
    row through ``view`` (its ``to_api()`` by default), or the whole page through ``views``
    (for views that need one more query for the page, not one per row)."""
    rows, next_cursor = page(query, key, limit=limit, cursor=cursor, descending=descending)
    if views is None:
        view = view or (lambda row: row.to_api())
        return {"items": [view(row) for row in rows], "next_cursor": next_cursor}
    return {"items": views(rows), "next_cursor": next_cursor}
