"""Reports about this hub instance, for the edge: readiness checks, status, runtime,
configuration, the queue and its workers, the agent card."""

from __future__ import annotations

import datetime as dt

import peewee

from db import agents, system, tasks
from db.base import database, iso, utcnow
from db.system import Instance
from hub import __version__
from hub.runtime import instance
from hub.settings import Settings


def database_check() -> dict:
    try:
        database.execute_sql("SELECT 1").fetchone()
    except (peewee.PeeweeException, OSError) as exc:
        return {"status": "fail", "detail": type(exc).__name__}
    return {"status": "ok", "detail": None}


def readiness() -> tuple[dict, bool]:
    """Every check this hub runs; ready only when none fails and it is not draining."""
    runtime = instance.current()
    checks = {"database": database_check()}
    checks["draining"] = (
        {"status": "fail", "detail": "draining: not taking new work"}
        if runtime.draining
        else {"status": "ok", "detail": None}
    )
    ready = all(check["status"] != "fail" for check in checks.values())
    return {"status": "ready" if ready else "not_ready", "checks": checks}, ready


def status() -> dict:
    runtime = instance.current()
    return {
        "name": "aether-hub",
        "version": __version__,
        "started_at": iso(runtime.started_at),
        "uptime_seconds": runtime.uptime_seconds,
        "instance_id": runtime.instance_id,
        "components": {"database": database_check()},
    }


def config() -> dict:
    runtime = instance.current()
    return {
        "settings": runtime.settings.redacted(),
        "runtime_tunable": list(Settings.RUNTIME_TUNABLE),
        "overrides": dict(runtime.overrides),
    }


def update_config(changes: dict) -> dict:
    instance.current().update_settings(changes)
    return config()


def instance_view(row: system.Instance) -> dict:
    runtime = instance.current()
    return row.to_api(now=utcnow(), stale_after=runtime.stale_after(), current=runtime.instance_id)


def runtime_report() -> dict:
    runtime = instance.current()
    return {
        "instance": instance_view(runtime.instance()),
        "draining": runtime.draining,
        "uptime_seconds": runtime.uptime_seconds,
        "database": {"backend": runtime.settings.database_backend},
        "http": {"in_flight": runtime.in_flight},
        "stream_clients": {"websocket": runtime.websocket_clients},
    }


def drain() -> dict:
    instance.current().drain()
    return runtime_report()


def agent_card(base_url: str) -> dict:
    """An A2A card: the hub as one agent whose skills are its active agents."""
    active = agents.listing(status="active").order_by(agents.Agent.id)
    return {
        "name": "Aether Hub",
        "description": "A self-hosted control plane for AI agents.",
        "url": base_url + "/api/v1",
        "version": __version__,
        "capabilities": {"streaming": True, "pushNotifications": False},
        "defaultInputModes": ["text/plain", "application/json"],
        "defaultOutputModes": ["text/plain", "application/json"],
        "skills": [
            {
                "id": agent.id,
                "name": agent.name,
                "description": agent.description or agent.role or agent.name,
                "tags": list(agent.capabilities),
            }
            for agent in active
        ],
    }


def queue_snapshot() -> dict:
    """The queue as operators see it: depth, running, waiting, and the live workers."""
    now = utcnow()
    runtime = instance.current()
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
    for row in live:
        current = row.id == runtime.instance_id and runtime.workers is not None
        workers.append(
            {
                "instance_id": row.id,
                "name": row.name,
                "workers": runtime.workers.count if current else row.workers,
                "busy": runtime.workers.busy if current else row.busy_workers,
                "heartbeat_at": iso(row.heartbeat_at),
            }
        )
    return {**tasks.queue_counts(now), "workers": workers}
