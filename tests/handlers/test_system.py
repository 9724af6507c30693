"""Probes, status, metrics, configuration, runtime and the agent card."""

from __future__ import annotations

import peewee
import pytest
import yaml

from db import base as db_base
from hub.core import spec
from hub.runtime.instance import Runtime
from tests.conftest import auth
from tests.factories import make_agent

CONFIRM = {"X-Confirm": "yes"}


def test_liveness(anon):
    response = anon.get("/health/live")
    assert (response.status_code, response.json()) == (200, {"status": "ok"})


def test_readiness_when_all_is_well(anon):
    response = anon.get("/health/ready")
    assert response.status_code == 200
    assert response.json() == {
        "status": "ready",
        "checks": {
            "database": {"status": "ok", "detail": None},
            "draining": {"status": "ok", "detail": None},
        },
    }


def test_readiness_is_503_when_the_database_is_unreachable(anon, monkeypatch):
    def unreachable(*args, **kwargs):
        raise peewee.OperationalError("connection refused")

    monkeypatch.setattr(db_base.database.obj, "execute_sql", unreachable)
    response = anon.get("/health/ready")
    assert response.status_code == 503
    assert response.headers["retry-after"] == "1"
    assert response.json()["status"] == "not_ready"
    assert response.json()["checks"]["database"] == {
        "status": "fail",
        "detail": "OperationalError",
    }


def test_status_is_public_and_has_no_secrets(app, anon, settings):
    body = anon.get("/api/v1/status").json()
    assert body["name"] == "aether-hub"
    assert body["instance_id"] == app.runtime.instance_id
    assert body["components"] == {"database": {"status": "ok", "detail": None}}
    assert settings.database_url not in str(body)


def test_metrics_follow_prometheus_conventions(anon, client):
    client.get("/api/v1/agents")
    text = anon.get("/metrics").text
    assert "# TYPE http_requests_total counter" in text
    assert 'http_requests_total{method="GET",operation_id="list_agents",status="200"}' in text
    assert "# TYPE http_request_duration_seconds histogram" in text
    assert (
        'http_request_duration_seconds_bucket{le="0.005",method="GET",'
        'operation_id="list_agents",status="200"}' in text
    )
    assert "process_cpu_seconds_total" in text or "python_gc_objects_collected_total" in text
    assert "http_requests_in_flight" in text


def test_config_redacts_secrets(app, client):
    app.runtime.settings = app.runtime.base = app.runtime.base.replace(
        admin_token="super-secret-token", secret_key="another-secret"
    )
    response = client.get("/api/v1/config")
    assert response.status_code == 200
    settings = response.json()["settings"]
    assert settings["admin_token"] == "***"
    assert settings["secret_key"] == "***"
    assert "super-secret-token" not in response.text
    assert "another-secret" not in response.text
    assert response.json()["runtime_tunable"] == [
        "log_level",
        "rate_limit_per_minute",
        "metrics_public",
    ]


def test_config_is_admin_only(client, keyring):
    response = client.get("/api/v1/config", headers=auth(keyring["operator"]))
    assert response.status_code == 403


def test_patch_config_needs_confirmation(client):
    response = client.patch("/api/v1/config", json={"rate_limit_per_minute": 5})
    assert response.status_code == 428
    assert response.json()["code"] == "confirmation_required"


def test_patch_config_applies_and_persists_for_every_instance(app, client, settings):
    response = client.patch("/api/v1/config", json={"rate_limit_per_minute": 5}, headers=CONFIRM)
    assert response.status_code == 200
    assert response.json()["settings"]["rate_limit_per_minute"] == 5
    assert response.json()["overrides"] == {"rate_limit_per_minute": 5}
    assert app.runtime.settings.rate_limit_per_minute == 5
    other = Runtime(settings)  # another hub process sharing the database
    other.register()
    assert other.settings.rate_limit_per_minute == 5


def test_patch_config_rejects_unknown_or_non_tunable_keys(client):
    for body in ({"admin_token": "x"}, {"database_url": "sqlite://"}, {}):
        response = client.patch("/api/v1/config", json=body, headers=CONFIRM)
        assert response.status_code == 400, body


def test_runtime_reports_this_instance(app, client):
    body = client.get("/api/v1/runtime").json()
    assert body["instance"]["id"] == app.runtime.instance_id
    assert body["instance"]["current"] is True
    assert body["instance"]["state"] == "running"
    assert body["draining"] is False
    assert body["database"]["backend"] in {"sqlite", "postgresql"}
    assert body["http"]["in_flight"] == 1  # this very request
    assert body["stream_clients"] == {"websocket": 0}


def test_instances_lists_every_hub_sharing_the_database(app, client, settings, clock):
    other = Runtime(settings.replace(instance_name="second"))
    other.register()
    items = client.get("/api/v1/runtime/instances").json()["items"]
    assert {item["id"] for item in items} == {app.runtime.instance_id, other.instance_id}
    clock.advance(hours=4)  # past 3 heartbeats (3 h in tests): silent instances are stale
    app.runtime.beat()
    states = {i["id"]: i["state"] for i in client.get("/api/v1/runtime/instances").json()["items"]}
    assert states == {app.runtime.instance_id: "running", other.instance_id: "stale"}


def test_drain_needs_admin_and_confirmation_then_readiness_fails(client, anon, keyring):
    assert (
        client.post("/api/v1/runtime/drain", headers=auth(keyring["operator"])).status_code == 403
    )
    assert client.post("/api/v1/runtime/drain").status_code == 428
    response = client.post("/api/v1/runtime/drain", headers=CONFIRM)
    assert response.status_code == 202
    assert response.json()["draining"] is True
    assert response.json()["instance"]["state"] == "draining"
    ready = anon.get("/health/ready")
    assert ready.status_code == 503
    assert ready.json()["checks"]["draining"]["status"] == "fail"


def test_agent_card_lists_active_agents_as_skills(client, anon):
    make_agent(client, id="writer", name="Writer", description="Writes.", capabilities=["prose"])
    make_agent(client, id="sleeper", name="Sleeper", status="paused")
    card = anon.get("/.well-known/agent.json").json()
    assert card["name"] == "Aether Hub"
    assert card["url"] == "http://testserver/api/v1"
    assert card["skills"] == [
        {"id": "writer", "name": "Writer", "description": "Writes.", "tags": ["prose"]}
    ]


@pytest.mark.parametrize("path", ["/api/v1/ui/", "/api/v1/openapi.json", "/api/v1/openapi.yaml"])
def test_docs_are_public_and_offline(anon, path):
    response = anon.get(path)
    assert response.status_code == 200
    if path.endswith("/ui/"):
        assert "swagger-ui" in response.text
        assert "https://" not in response.text.split("<body")[0], "assets are served locally"
        assert anon.get("/api/v1/ui/swagger-ui-bundle.js").status_code == 200


def _refs(node) -> int:
    if isinstance(node, dict):
        return ("$ref" in node) + sum(_refs(value) for value in node.values())
    return sum(_refs(item) for item in node) if isinstance(node, list) else 0


def test_the_yaml_spec_is_the_file_byte_for_byte(anon):
    response = anon.get("/api/v1/openapi.yaml")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/yaml"
    assert response.content == spec.SPEC_PATH.read_bytes()


def test_the_json_spec_is_the_same_document_refs_and_servers_intact(anon):
    response = anon.get("/api/v1/openapi.json")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    document = response.json()
    assert document == yaml.safe_load(spec.SPEC_PATH.read_bytes())
    assert document["servers"] == [
        {"url": "/", "description": "This hub (the origin that serves this document)"}
    ]
    agent = document["paths"]["/api/v1/agents/{agent_id}"]["get"]["responses"]["200"]
    assert agent["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/Agent"}
    assert response.text.count('"$ref": ') == _refs(document) > 1000  # none inlined


def test_swagger_ui_loads_the_served_json_spec(anon):
    page = anon.get("/api/v1/ui/")
    assert page.status_code == 200
    assert 'url: "/api/v1/openapi.json"' in page.text
    assert anon.get("/api/v1/ui/swagger-ui-config.json").json() == {
        "persistAuthorization": True,
        "displayOperationId": True,
    }


def test_cors_is_off_by_default(anon):
    response = anon.get("/health/live", headers={"Origin": "https://ui.example"})
    assert "access-control-allow-origin" not in response.headers


def test_cors_allows_the_configured_origins(settings):
    from starlette.testclient import TestClient

    from hub.app import create_app

    hub = create_app(settings.replace(cors_origins=("https://ui.example",)))
    with TestClient(hub) as browser:
        preflight = browser.options(
            "/api/v1/agents",
            headers={
                "Origin": "https://ui.example",
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "authorization, content-type",
            },
        )
        assert preflight.status_code == 200
        assert preflight.headers["access-control-allow-origin"] == "https://ui.example"
        simple = browser.get("/health/live", headers={"Origin": "https://ui.example"})
        assert simple.headers["access-control-allow-origin"] == "https://ui.example"
        assert "X-Request-Id" in simple.headers["access-control-expose-headers"]
        other = browser.get("/health/live", headers={"Origin": "https://evil.example"})
        assert "access-control-allow-origin" not in other.headers


def test_the_body_limit_is_a_setting(app, client):
    app.runtime.settings = app.runtime.settings.replace(body_limit=100)
    response = client.post("/api/v1/agents", json={"id": "x" * 200, "name": "n", "model": "a/b"})
    assert response.status_code == 413


def test_metrics_can_be_made_private(app, anon, keyring):
    """Public by default (AETHER_METRICS_PUBLIC); made private, it needs a key like the rest."""
    app.runtime.apply_overrides({"metrics_public": False})
    assert anon.get("/metrics").status_code == 401
    viewer = anon.get("/metrics", headers={"Authorization": f"Bearer {keyring['viewer']}"})
    assert viewer.status_code == 200
