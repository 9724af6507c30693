"""Parsing RFC 3339 timestamps from query parameters into naive UTC."""

from __future__ import annotations

import datetime as dt

from hub.core.problems import ValidationFailed


def parse_timestamp(value: str | None, field: str) -> dt.datetime | None:
    if value is None:
        return None
    try:
        parsed = dt.datetime.fromisoformat(value.replace("z", "Z"))
    except ValueError as exc:
        raise ValidationFailed(
            f"{field} is not an RFC 3339 timestamp.",
            errors=[{"field": f"query.{field}", "message": "not an RFC 3339 date-time"}],
        ) from exc
    if parsed.tzinfo is None:
        raise ValidationFailed(
            f"{field} needs a timezone (for example a trailing Z).",
            errors=[{"field": f"query.{field}", "message": "timezone required"}],
        )
    return parsed.astimezone(dt.UTC).replace(tzinfo=None)
