"""Start-up and shut-down: migrations, the first admin key, the heartbeat, a clean stop."""

from __future__ import annotations

from starlette.testclient import TestClient

from db import api_keys, system
from db import base as db_base
from hub.app import create_app
from hub.services.auth import authenticate


def test_first_start_makes_one_admin_key_and_only_once(settings):
    first = create_app(settings)
    secret = first.runtime.bootstrap_secret
    assert secret is not None and secret.startswith("aeth_")
    principal = authenticate(secret, admin_token="")
    assert principal.role == "admin"
    assert secret not in str(list(api_keys.ApiKey.select().dicts()))
    db_base.database.close()
    second = create_app(settings)
    assert second.runtime.bootstrap_secret is None
    assert api_keys.listing().count() == 1


def test_an_admin_token_replaces_the_generated_key(settings):
    hub = create_app(settings.replace(admin_token="t0ken-from-env"))
    assert hub.runtime.bootstrap_secret is None
    assert api_keys.listing().count() == 0
    with TestClient(hub, headers={"Authorization": "Bearer t0ken-from-env"}) as client:
        assert client.get("/api/v1/auth/me").json() == {
            "key_id": "admin-token",
            "name": "AETHER_ADMIN_TOKEN",
            "role": "admin",
        }


def test_lifespan_beats_and_marks_the_instance_stopped(settings):
    hub = create_app(settings.replace(heartbeat_seconds=0.05))
    instance_id = hub.runtime.instance_id
    started = system.Instance.get_by_id(instance_id).heartbeat_at
    with TestClient(hub) as client:
        for _ in range(200):  # wait (bounded) for one heartbeat to land
            client.get("/health/live")
            if system.Instance.get_by_id(instance_id).heartbeat_at > started:
                break
        assert system.Instance.get_by_id(instance_id).heartbeat_at > started
        assert system.Instance.get_by_id(instance_id).stopped_at is None
    assert system.Instance.get_by_id(instance_id).stopped_at is not None
    db_base.database.close()
