"""Probes, status, metrics, configuration and this hub's runtime."""

from __future__ import annotations

from starlette.responses import Response

from db import system as db_system
from db.pagination import list_page
from hub.core import metrics, spec
from hub.http import context
from hub.runtime import reports


async def get_liveness():
    """The process is up."""
    return {"status": "ok"}, 200


def get_readiness():
    """Whether this hub can take traffic, check by check."""
    report, ready = reports.readiness()
    return (report, 200) if ready else (report, 503, {"Retry-After": "1"})


async def get_metrics():
    """Prometheus metrics."""
    return Response(metrics.render(), media_type=metrics.CONTENT_TYPE)


def get_status():
    """Version, uptime and component health."""
    return reports.status(), 200


async def get_config():
    """Effective settings, secrets redacted."""
    return reports.config(), 200


def update_config(body):
    """Change runtime-tunable settings."""
    return reports.update_config(body), 200


def get_runtime():
    """This hub instance right now."""
    return reports.runtime_report(), 200


def list_instances(limit=50, cursor=None):
    """Every hub instance sharing the database, with heartbeats."""
    return list_page(
        db_system.instances(),
        db_system.Instance.id,
        limit=limit,
        cursor=cursor,
        descending=True,
        view=reports.instance_view,
    ), 200


def drain_runtime():
    """Stop taking new work and finish what runs."""
    return reports.drain(), 202


async def get_openapi_json():
    """This contract as JSON."""
    return Response(spec.document_json(), media_type="application/json")


async def get_openapi_yaml():
    """This contract, byte for byte as written."""
    return Response(spec.document(), media_type="application/yaml")


def get_agent_card():
    """The A2A agent card, built from the active agents."""
    return reports.agent_card(context.base_url()), 200
