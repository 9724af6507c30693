"""One usage row per LLM call, and the aggregates over them."""

from __future__ import annotations

import datetime as dt

import peewee

from db.base import BaseModel


class UsageRecord(BaseModel):
    id = peewee.BigAutoField()
    at = peewee.DateTimeField(index=True)
    source = peewee.CharField(max_length=16)  # chat | openai | test
    provider = peewee.CharField(max_length=64)
    model = peewee.CharField(max_length=200)
    agent_id = peewee.CharField(max_length=64, null=True, index=True)
    session_id = peewee.CharField(max_length=40, null=True, index=True)
    turn_id = peewee.CharField(max_length=40, null=True)
    status = peewee.CharField(max_length=16)  # ok | error
    prompt_tokens = peewee.IntegerField()
    completion_tokens = peewee.IntegerField()
    latency_ms = peewee.FloatField(null=True)
    ttft_ms = peewee.FloatField(null=True)
    cost = peewee.FloatField()

    class Meta:
        table_name = "usage_record"


def _totals(*group: peewee.Node) -> peewee.Select:
    return UsageRecord.select(
        *group,
        peewee.fn.COUNT(UsageRecord.id).alias("calls"),
        peewee.fn.SUM(peewee.Case(None, [(UsageRecord.status == "error", 1)], 0)).alias("errors"),
        peewee.fn.COALESCE(peewee.fn.SUM(UsageRecord.prompt_tokens), 0).alias("prompt_tokens"),
        peewee.fn.COALESCE(peewee.fn.SUM(UsageRecord.completion_tokens), 0).alias(
            "completion_tokens"
        ),
        peewee.fn.COALESCE(peewee.fn.SUM(UsageRecord.cost), 0).alias("cost"),
    )


def totals(since: dt.datetime, *group: peewee.Field, where=None) -> list[dict]:
    """Calls, errors, tokens and cost since a moment, grouped by ``group`` fields."""
    query = _totals(*group).where(UsageRecord.at >= since)
    if where is not None:
        query = query.where(where)
    if group:
        query = query.group_by(*group).order_by(*group)
    return list(query.dicts())


def day_totals(since: dt.datetime) -> list[dict]:
    """Totals per UTC day (``date(at)`` works on SQLite and PostgreSQL alike)."""
    day = peewee.fn.DATE(UsageRecord.at)
    rows = (
        _totals(day.alias("day")).where(UsageRecord.at >= since).group_by(day).order_by(day).dicts()
    )
    return [{**row, "day": str(row["day"])[:10]} for row in rows]
