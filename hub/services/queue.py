"""The queue as operators see it: depth, running, waiting, and the live workers."""

from __future__ import annotations

import datetime as dt

from db import tasks
from db.base import iso, utcnow
from db.system import Instance
from hub import state


def snapshot() -> dict:
    now = utcnow()
    runtime = state.runtime()
    fresh_since = now - dt.timedelta(seconds=runtime.stale_after())
    live = (
        Instance.select()
        .where(
            Instance.stopped_at.is_null()
            & (Instance.heartbeat_at >= fresh_since)
            & (Instance.workers > 0)
        )
        .order_by(Instance.id)
    )
    workers = []
    for instance in live:
        current = instance.id == runtime.instance_id and runtime.workers is not None
        workers.append(
            {
                "instance_id": instance.id,
                "name": instance.name,
                "workers": runtime.workers.count if current else instance.workers,
                "busy": runtime.workers.busy if current else instance.busy_workers,
                "heartbeat_at": iso(instance.heartbeat_at),
            }
        )
    return {**tasks.queue_counts(now), "workers": workers}
