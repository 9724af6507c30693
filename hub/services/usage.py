"""Usage accounting: one row per LLM call (tokens, latency, cost), and the reports over them.

Cost comes from the price table in ``AETHER_PRICES``: JSON mapping ``provider/model`` (or
``provider/*``) to USD per million ``input`` and ``output`` tokens. Unpriced models cost 0.
"""

from __future__ import annotations

import datetime as dt
import functools
import json

from db import usage as db_usage
from db.base import utcnow
from db.usage import UsageRecord
from hub.core import metrics
from hub.core.problems import ValidationFailed
from hub.settings import current_settings


@functools.cache
def _prices(raw: str) -> dict:
    try:
        table = json.loads(raw) if raw else {}
        return {
            str(ref): (float(p.get("input", 0)), float(p.get("output", 0)))
            for ref, p in table.items()
        }
    except (ValueError, TypeError, AttributeError) as exc:
        raise ValidationFailed(f"AETHER_PRICES is not a valid price table: {exc}") from exc


def cost(provider: str, model: str, prompt_tokens: int, completion_tokens: int) -> float:
    table = _prices(current_settings().prices)
    price = table.get(f"{provider}/{model}") or table.get(f"{provider}/*") or (0.0, 0.0)
    return round((prompt_tokens * price[0] + completion_tokens * price[1]) / 1_000_000, 8)


def record(
    *,
    source: str,
    provider: str,
    model: str,
    status: str,
    prompt_tokens: int = 0,
    completion_tokens: int = 0,
    latency_ms: float | None = None,
    ttft_ms: float | None = None,
    agent_id: str | None = None,
    session_id: str | None = None,
    turn_id: str | None = None,
) -> UsageRecord:
    """Store one call (inside the caller's transaction when there is one) and count it."""
    row = UsageRecord.create(
        at=utcnow(),
        source=source,
        provider=provider,
        model=model,
        agent_id=agent_id,
        session_id=session_id,
        turn_id=turn_id,
        status=status,
        prompt_tokens=prompt_tokens,
        completion_tokens=completion_tokens,
        latency_ms=latency_ms,
        ttft_ms=ttft_ms,
        cost=cost(provider, model, prompt_tokens, completion_tokens),
    )
    metrics.LLM_CALLS.labels(provider, model, status).inc()
    metrics.LLM_TOKENS.labels(provider, model, "prompt").inc(prompt_tokens)
    metrics.LLM_TOKENS.labels(provider, model, "completion").inc(completion_tokens)
    if latency_ms is not None:
        metrics.LLM_LATENCY.labels(provider, model).observe(latency_ms / 1000)
    return row


def _since(days: int) -> dt.datetime:
    now = utcnow()
    return dt.datetime(now.year, now.month, now.day) - dt.timedelta(days=days - 1)


def _row(row: dict) -> dict:
    prompt, completion = int(row["prompt_tokens"] or 0), int(row["completion_tokens"] or 0)
    return {
        "calls": int(row["calls"] or 0),
        "errors": int(row["errors"] or 0),
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "cost": round(float(row["cost"] or 0), 8),
    }


def summary(days: int) -> dict:
    since = _since(days)
    (row,) = db_usage.totals(since)
    return {"days": days, "since": since.date().isoformat(), **_row(row)}


def daily(days: int) -> dict:
    rows = db_usage.day_totals(_since(days))
    return {"days": days, "items": [{"day": row["day"], **_row(row)} for row in rows]}


def by_model(days: int) -> dict:
    rows = db_usage.totals(_since(days), UsageRecord.provider, UsageRecord.model)
    items = [{"provider": r["provider"], "model": r["model"], **_row(r)} for r in rows]
    return {"days": days, "items": items}


def by_agent(days: int) -> dict:
    rows = db_usage.totals(
        _since(days), UsageRecord.agent_id, where=UsageRecord.agent_id.is_null(False)
    )
    return {"days": days, "items": [{"agent_id": r["agent_id"], **_row(r)} for r in rows]}


def for_session(session_id: str) -> dict:
    (row,) = db_usage.totals(dt.datetime(1970, 1, 1), where=UsageRecord.session_id == session_id)
    return {"session_id": session_id, **_row(row)}
