"""Reports about this hub: readiness checks, status, runtime, configuration, agent card."""

from __future__ import annotations

import peewee

from db import agents, system
from db.base import database, iso, utcnow
from hub import __version__, state
from hub.settings import Settings


def database_check() -> dict:
    try:
        database.execute_sql("SELECT 1").fetchone()
    except (peewee.PeeweeException, OSError) as exc:
        return {"status": "fail", "detail": type(exc).__name__}
    return {"status": "ok", "detail": None}


def readiness() -> tuple[dict, bool]:
    """Every check this hub runs; ready only when none fails and it is not draining."""
    runtime = state.runtime()
    checks = {"database": database_check()}
    checks["draining"] = (
        {"status": "fail", "detail": "draining: not taking new work"}
        if runtime.draining
        else {"status": "ok", "detail": None}
    )
    ready = all(check["status"] != "fail" for check in checks.values())
    return {"status": "ready" if ready else "not_ready", "checks": checks}, ready


def status() -> dict:
    runtime = state.runtime()
    return {
        "name": "aether-hub",
        "version": __version__,
        "started_at": iso(runtime.started_at),
        "uptime_seconds": runtime.uptime_seconds,
        "instance_id": runtime.instance_id,
        "components": {"database": database_check()},
    }


def config() -> dict:
    runtime = state.runtime()
    return {
        "settings": runtime.settings.redacted(),
        "runtime_tunable": list(Settings.RUNTIME_TUNABLE),
        "overrides": dict(runtime.overrides),
    }


def update_config(changes: dict) -> dict:
    state.runtime().update_settings(changes)
    return config()


def instance_view(instance: system.Instance) -> dict:
    runtime = state.runtime()
    return instance.to_api(
        now=utcnow(), stale_after=runtime.stale_after(), current=runtime.instance_id
    )


def runtime_report() -> dict:
    runtime = state.runtime()
    return {
        "instance": instance_view(runtime.instance()),
        "draining": runtime.draining,
        "uptime_seconds": runtime.uptime_seconds,
        "database": {"backend": runtime.settings.database_backend},
        "http": {"in_flight": runtime.in_flight},
        "stream_clients": {"websocket": runtime.websocket_clients},
    }


def drain() -> dict:
    state.runtime().drain()
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
