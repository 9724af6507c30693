"""Parsing RFC 3339 timestamps (query parameters, body members) into naive UTC.

Every failure is a 400 naming the field: text that is not a date-time, a missing offset, and
a date-time whose UTC instant falls outside years 1 to 9999 (``9999-12-31T23:59:59-14:00``)."""

from __future__ import annotations

import datetime as dt

from hub.core.problems import ValidationFailed


def parse_timestamp(
    value: str | dt.datetime | None, field: str, where: str = "query"
) -> dt.datetime | None:
    """``value`` as naive UTC; ``field`` and ``where`` (``query``, ``body``) name it in the
    problem."""
    if value is None:
        return None
    name = f"{where}.{field}"
    if isinstance(value, dt.datetime):
        parsed = value
    else:
        try:
            parsed = dt.datetime.fromisoformat(value.replace("z", "Z"))
        except ValueError as exc:
            raise ValidationFailed(
                f"{field} is not an RFC 3339 timestamp.",
                errors=[{"field": name, "message": "not an RFC 3339 date-time"}],
            ) from exc
    if parsed.tzinfo is None:
        raise ValidationFailed(
            f"{field} needs a timezone (for example a trailing Z).",
            errors=[{"field": name, "message": "timezone required"}],
        )
    try:
        return parsed.astimezone(dt.UTC).replace(tzinfo=None)
    except OverflowError as exc:
        raise ValidationFailed(
            f"{field} is outside the years 1 to 9999 once in UTC.",
            errors=[{"field": name, "message": "out of range in UTC"}],
        ) from exc
