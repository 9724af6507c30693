"""Behaviour of the auth operations: who am I, and API keys (create, list, get, revoke).
Runs on SQLite and PostgreSQL (see conftest)."""

from __future__ import annotations

import hashlib

import pytest
from starlette.testclient import TestClient

from db import base as db_base
from db.api_keys import ApiKey
from hub.app import create_app
from hub.services import keys
from tests.assertions import assert_problem, error_fields
from tests.conftest import auth

ME = "/api/v1/auth/me"
KEYS = "/api/v1/api-keys"
KEY_FIELDS = {
    "id",
    "name",
    "role",
    "prefix",
    "created_at",
    "created_by",
    "last_used_at",
    "revoked_at",
}
NOW = "2026-01-01T12:00:00.000Z"  # the fake clock's start, as the API writes it
ADMIN_TOKEN = "test-admin-token-with-enough-entropy-0123456789"
CONFIRM = {"X-Confirm": "yes"}


# --- helpers -----------------------------------------------------------------------------


def key_url(key_id: str) -> str:
    return f"{KEYS}/{key_id}"


def key_ids(client) -> dict[str, str]:
    """Active key ids by name (the keyring's keys are named ``test <role>``)."""
    return {item["name"]: item["id"] for item in client.get(KEYS).json()["items"]}


def create_key(client, name: str = "made", role: str = "operator") -> dict:
    response = client.post(KEYS, json={"name": name, "role": role})
    assert response.status_code == 201, response.text
    return response.json()


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def without_secret(key: dict) -> dict:
    return {name: value for name, value in key.items() if name != "secret"}


def revoke(client, key_id: str, **headers):
    return client.delete(key_url(key_id), headers={**CONFIRM, **headers})


@pytest.fixture
def token_client(settings):
    """A hub started with AETHER_ADMIN_TOKEN set (so no bootstrap key), calling with it."""
    hub = create_app(settings.replace(admin_token=ADMIN_TOKEN))
    with TestClient(hub, headers=auth(ADMIN_TOKEN)) as test_client:
        yield test_client
    if not db_base.database.is_closed():
        db_base.database.close()


# --- who am I ----------------------------------------------------------------------------


@pytest.mark.parametrize("role", ["viewer", "operator", "admin"])
def test_me_answers_the_calling_key_by_bearer(client, anon, keyring, role):
    expected_id = key_ids(client)[f"test {role}"]

    response = anon.get(ME, headers=auth(keyring[role]))

    assert response.status_code == 200, response.text
    assert response.json() == {"key_id": expected_id, "name": f"test {role}", "role": role}


@pytest.mark.parametrize("role", ["viewer", "operator", "admin"])
def test_me_answers_the_calling_key_by_x_api_key(client, anon, keyring, role):
    expected_id = key_ids(client)[f"test {role}"]

    response = anon.get(ME, headers={"X-API-Key": keyring[role]})

    assert response.status_code == 200, response.text
    assert response.json() == {"key_id": expected_id, "name": f"test {role}", "role": role}


def test_me_accepts_the_bearer_scheme_in_any_case(anon, keyring):
    response = anon.get(ME, headers={"Authorization": f"bearer {keyring['viewer']}"})

    assert response.status_code == 200, response.text
    assert response.json()["role"] == "viewer"


def test_me_answers_the_bootstrap_admin_key(client, anon, app):
    response = anon.get(ME, headers=auth(app.runtime.bootstrap_secret))

    assert response.json() == {
        "key_id": key_ids(client)["bootstrap admin"],
        "name": "bootstrap admin",
        "role": "admin",
    }


def test_me_answers_the_admin_token(token_client):
    response = token_client.get(ME)

    assert response.status_code == 200, response.text
    assert response.json() == {
        "key_id": "admin-token",
        "name": "AETHER_ADMIN_TOKEN",
        "role": "admin",
    }


def test_me_without_a_key_is_401(anon):
    response = anon.get(ME)

    assert_problem(response, 401, "unauthorized")
    assert response.headers["www-authenticate"].lower().startswith("bearer")


@pytest.mark.parametrize(
    "headers",
    [
        {"Authorization": "Bearer aeth_not-a-real-key"},
        {"X-API-Key": "aeth_not-a-real-key"},
        {"Authorization": "Basic dXNlcjpwYXNz"},
        {"Authorization": "Bearer "},
    ],
    ids=["unknown-bearer", "unknown-x-api-key", "basic-scheme", "empty-bearer"],
)
def test_me_with_a_bad_credential_is_401(anon, headers):
    response = anon.get(ME, headers=headers)

    assert_problem(response, 401, "unauthorized")
    assert "www-authenticate" in response.headers


@pytest.mark.parametrize(
    "other", ["aeth_not-a-real-key", "admin"], ids=["invalid", "another-valid"]
)
@pytest.mark.parametrize("valid_in", ["bearer", "x-api-key"])
def test_two_different_credentials_are_401_even_if_one_is_valid(anon, keyring, other, valid_in):
    """A valid key beside an invalid (or another) one is refused, never picked."""
    valid, other = keyring["viewer"], keyring["admin"] if other == "admin" else other
    if valid_in == "bearer":
        headers = {"Authorization": f"Bearer {valid}", "X-API-Key": other}
    else:
        headers = {"Authorization": f"Bearer {other}", "X-API-Key": valid}

    response = anon.get(ME, headers=headers)

    assert_problem(response, 401, "unauthorized")
    assert "different credentials" in response.json()["detail"]


def test_an_empty_x_api_key_beside_a_valid_bearer_is_401(anon, keyring):
    """Sent and different: schemathesis' ``ignored_auth`` probes exactly this."""
    headers = {"Authorization": f"Bearer {keyring['admin']}", "X-API-Key": ""}

    response = anon.get(ME, headers=headers)

    assert_problem(response, 401, "unauthorized")


def test_the_same_key_in_both_headers_is_accepted(anon, keyring):
    key = keyring["operator"]
    response = anon.get(ME, headers={"Authorization": f"Bearer {key}", "X-API-Key": key})

    assert response.status_code == 200
    assert response.json()["role"] == "operator"


# --- create ------------------------------------------------------------------------------


def test_create_answers_201_with_location_and_the_secret(client, clock):
    admin_id = key_ids(client)["test admin"]

    response = client.post(KEYS, json={"name": "ci runner", "role": "operator"})

    assert response.status_code == 201, response.text
    created = response.json()
    assert response.headers["location"] == key_url(created["id"])
    assert created["id"].startswith("key_")
    assert created["secret"].startswith(created["prefix"])
    assert len(created["secret"]) >= 32
    assert created == {
        "id": created["id"],
        "name": "ci runner",
        "role": "operator",
        "prefix": created["secret"][:12],
        "created_at": NOW,
        "created_by": admin_id,
        "last_used_at": None,
        "revoked_at": None,
        "secret": created["secret"],
    }


def test_created_secret_works_at_once(client, anon):
    created = create_key(client, name="fresh", role="viewer")

    response = anon.get(ME, headers=auth(created["secret"]))

    assert response.json() == {"key_id": created["id"], "name": "fresh", "role": "viewer"}


@pytest.mark.parametrize("role", ["viewer", "operator", "admin"])
def test_created_key_carries_the_role_asked_for(client, anon, role):
    created = create_key(client, role=role)

    assert anon.get(ME, headers=auth(created["secret"])).json()["role"] == role


def test_every_created_key_has_its_own_secret(client):
    secrets = {create_key(client, name=f"k{n}")["secret"] for n in range(3)}

    assert len(secrets) == 3


def test_the_secret_is_shown_only_in_the_create_answer(client):
    created = create_key(client)

    fetched = client.get(key_url(created["id"]))
    listed = client.get(KEYS, params={"include_revoked": True})

    assert fetched.json() == without_secret(created)
    assert created["secret"] not in fetched.text
    assert created["secret"] not in listed.text


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"name": "x", "role": "root"}, "body.role"),
        ({"role": "viewer"}, "body.name"),
        ({"name": "x"}, "body.role"),
        ({"name": "", "role": "viewer"}, "body.name"),
        ({"name": "x", "role": "viewer", "secret": "mine"}, "body.secret"),
    ],
    ids=["unknown-role", "missing-name", "missing-role", "empty-name", "chosen-secret"],
)
def test_create_rejects_bad_input_naming_the_field(client, body, field):
    before = client.get(KEYS).json()

    response = client.post(KEYS, json=body)

    assert_problem(response, 400, "validation_error")
    assert field in error_fields(response)
    assert client.get(KEYS).json() == before


# --- list and get ------------------------------------------------------------------------


def test_list_answers_active_keys_oldest_first(client):
    made = [create_key(client, name=f"made {n}") for n in range(3)]

    items = client.get(KEYS).json()["items"]

    assert items[0]["name"] == "bootstrap admin"
    assert {item["name"] for item in items[1:4]} == {"test viewer", "test operator", "test admin"}
    assert items[4:] == [without_secret(key) for key in made]


def test_keys_made_in_the_same_millisecond_list_in_creation_order(client, monkeypatch):
    class FrozenTime:
        @staticmethod
        def time() -> float:
            return 1767268800.123

    monkeypatch.setattr(db_base, "time", FrozenTime)
    made = [keys.create(f"burst {n}", "viewer")[0].id for n in range(8)]

    listed = [item["id"] for item in client.get(KEYS).json()["items"]]

    assert [key_id for key_id in listed if key_id in made] == made


def test_list_never_shows_a_secret_or_a_hash(client, keyring, app):
    create_key(client)
    response = client.get(KEYS, params={"include_revoked": True})
    hashes = [row.secret_hash for row in ApiKey.select()]

    for item in response.json()["items"]:
        assert set(item) == KEY_FIELDS
    for secret in [*keyring.values(), app.runtime.bootstrap_secret]:
        assert secret not in response.text
    for secret_hash in hashes:
        assert secret_hash not in response.text


def test_list_pages_through_every_key_once(client):
    for n in range(4):
        create_key(client, name=f"paged {n}")
    everything = client.get(KEYS).json()["items"]

    seen, cursor = [], None
    while True:
        page = client.get(KEYS, params={"limit": 3, **({"cursor": cursor} if cursor else {})})
        seen += page.json()["items"]
        cursor = page.json()["next_cursor"]
        if cursor is None:
            break

    assert len(everything) == 8
    assert seen == everything


def test_list_leaves_out_revoked_keys_unless_asked(client):
    gone = create_key(client, name="gone")
    revoke(client, gone["id"])

    default = client.get(KEYS).json()["items"]
    explicit = client.get(KEYS, params={"include_revoked": False}).json()["items"]
    everything = client.get(KEYS, params={"include_revoked": True}).json()["items"]

    assert gone["id"] not in [item["id"] for item in default]
    assert explicit == default
    assert [item["id"] for item in everything] == [item["id"] for item in default] + [gone["id"]]
    assert everything[-1]["revoked_at"] is not None


def test_get_answers_the_key_without_its_secret(client, clock):
    created = create_key(client, name="lookup", role="viewer")

    response = client.get(key_url(created["id"]))

    assert response.status_code == 200, response.text
    assert response.json() == without_secret(created)


def test_get_unknown_key_is_404(client):
    assert_problem(client.get(key_url("key_doesnotexist")), 404, "api_key_not_found")


def test_get_with_an_invalid_key_id_is_400(client):
    response = client.get(key_url("not.valid"))

    assert_problem(response, 400, "validation_error")
    assert "path.key_id" in error_fields(response)


# --- revoke ------------------------------------------------------------------------------


def test_revoke_without_confirmation_is_428_and_keeps_the_key(client, anon):
    created = create_key(client)

    response = client.delete(key_url(created["id"]))

    assert_problem(response, 428, "confirmation_required")
    assert anon.get(ME, headers=auth(created["secret"])).status_code == 200
    assert client.get(key_url(created["id"])).json()["revoked_at"] is None


def test_revoke_with_a_confirmation_other_than_yes_is_428(client, anon):
    created = create_key(client)

    response = client.delete(key_url(created["id"]), headers={"X-Confirm": "no"})

    assert_problem(response, 428, "confirmation_required")
    assert anon.get(ME, headers=auth(created["secret"])).status_code == 200


def test_revoke_answers_204_and_the_key_stops_working_at_once(client, anon, clock):
    created = create_key(client)
    assert anon.get(ME, headers=auth(created["secret"])).status_code == 200
    clock.advance(hours=1)

    response = revoke(client, created["id"])

    assert response.status_code == 204
    assert response.content == b""
    assert_problem(anon.get(ME, headers=auth(created["secret"])), 401, "unauthorized")
    assert_problem(anon.get(ME, headers={"X-API-Key": created["secret"]}), 401, "unauthorized")
    assert client.get(key_url(created["id"])).json() == {
        **without_secret(created),
        "last_used_at": NOW,
        "revoked_at": "2026-01-01T13:00:00.000Z",
    }


def test_the_204_answer_is_not_labelled_a_problem(client):
    created = create_key(client)

    response = revoke(client, created["id"])

    assert response.status_code == 204
    assert response.headers.get("content-type") != "application/problem+json"


def test_revoke_an_already_revoked_key_is_404(client):
    created = create_key(client)
    revoke(client, created["id"])

    assert_problem(revoke(client, created["id"]), 404, "api_key_not_found")


def test_revoke_unknown_key_is_404(client):
    assert_problem(revoke(client, "key_doesnotexist"), 404, "api_key_not_found")


def test_revoke_one_of_two_admin_keys_works(client, anon, app):
    bootstrap_id = key_ids(client)["bootstrap admin"]

    response = revoke(client, bootstrap_id)

    assert response.status_code == 204, response.text
    assert anon.get(ME, headers=auth(app.runtime.bootstrap_secret)).status_code == 401


def test_an_admin_may_revoke_its_own_key_while_another_admin_remains(client, anon, keyring):
    own_id = key_ids(client)["test admin"]

    response = revoke(client, own_id)

    assert response.status_code == 204, response.text
    assert anon.get(ME, headers=auth(keyring["admin"])).status_code == 401


def test_revoking_the_last_admin_key_is_409(client, anon, keyring):
    ids = key_ids(client)
    assert revoke(client, ids["bootstrap admin"]).status_code == 204

    response = revoke(client, ids["test admin"])

    assert_problem(response, 409, "last_admin_key")
    assert anon.get(ME, headers=auth(keyring["admin"])).status_code == 200
    assert client.get(key_url(ids["test admin"])).json()["revoked_at"] is None


def test_revoked_admin_keys_do_not_count_as_remaining_admins(client):
    spare = create_key(client, name="spare admin", role="admin")
    ids = key_ids(client)
    assert revoke(client, ids["bootstrap admin"]).status_code == 204
    assert revoke(client, spare["id"]).status_code == 204

    assert_problem(revoke(client, ids["test admin"]), 409, "last_admin_key")


def test_non_admin_keys_can_be_revoked_with_a_single_admin(client):
    ids = key_ids(client)
    revoke(client, ids["bootstrap admin"])

    assert revoke(client, ids["test operator"]).status_code == 204
    assert revoke(client, ids["test viewer"]).status_code == 204


def test_the_last_admin_key_may_go_when_an_admin_token_is_set(token_client):
    only_admin = create_key(token_client, name="only admin", role="admin")
    assert [item["role"] for item in token_client.get(KEYS).json()["items"]] == ["admin"]

    response = revoke(token_client, only_admin["id"])

    assert response.status_code == 204, response.text
    assert token_client.get(ME).status_code == 200


# --- roles -------------------------------------------------------------------------------


KEY_OPERATIONS = [
    ("GET", KEYS, None),
    ("POST", KEYS, {"name": "sneaky", "role": "admin"}),
    ("GET", key_url("TARGET"), None),
    ("DELETE", key_url("TARGET"), None),
]
KEY_OPERATION_IDS = ["list", "create", "get", "revoke"]


@pytest.mark.parametrize("role", ["operator", "viewer"])
@pytest.mark.parametrize(("method", "path", "body"), KEY_OPERATIONS, ids=KEY_OPERATION_IDS)
def test_key_operations_need_the_admin_role(client, keyring, role, method, path, body):
    target = key_ids(client)["test viewer"]
    before = client.get(KEYS, params={"include_revoked": True}).json()

    response = client.request(
        method,
        path.replace("TARGET", target),
        json=body,
        headers={**auth(keyring[role]), **CONFIRM},
    )

    assert_problem(response, 403, "role_too_low")
    after = client.get(KEYS, params={"include_revoked": True}).json()
    assert _ignoring_use(after) == _ignoring_use(before)


def _ignoring_use(listing: dict) -> list[dict]:
    """Keys without ``last_used_at``, which the refused call itself may set."""
    return [{**key, "last_used_at": None} for key in listing["items"]]


def test_using_a_key_records_last_used_at_to_the_minute(client, anon, clock):
    created = create_key(client, role="viewer")
    anon.get(ME, headers=auth(created["secret"]))
    assert client.get(key_url(created["id"])).json()["last_used_at"] == NOW
    clock.advance(seconds=30)
    anon.get(ME, headers=auth(created["secret"]))
    assert client.get(key_url(created["id"])).json()["last_used_at"] == NOW
    clock.advance(minutes=2)
    anon.get(ME, headers=auth(created["secret"]))
    assert client.get(key_url(created["id"])).json()["last_used_at"] == "2026-01-01T12:02:30.000Z"


@pytest.mark.parametrize("role", ["viewer", "operator"])
def test_me_is_open_to_every_role(anon, keyring, role):
    assert anon.get(ME, headers=auth(keyring[role])).status_code == 200


# --- storage -----------------------------------------------------------------------------


def test_the_stored_row_holds_only_a_sha256_of_the_secret(client):
    created = create_key(client, name="stored")
    secret = created["secret"]

    row = ApiKey.select().where(ApiKey.id == created["id"]).dicts().get()

    assert row["secret_hash"] == sha256(secret)
    for column, value in row.items():
        assert secret not in str(value), f"the secret appears in column {column}"


def test_no_row_stores_any_secret(client, keyring, app):
    create_key(client)
    secrets = [*keyring.values(), app.runtime.bootstrap_secret]

    rows = list(ApiKey.select().dicts())

    stored = {row["secret_hash"] for row in rows}
    assert {sha256(secret) for secret in secrets} <= stored
    for row in rows:
        for secret in secrets:
            assert all(secret not in str(value) for value in row.values())


# --- requests without a valid credential (issue 13, break 13) ---------------------------


@pytest.fixture
def guarded(settings):
    return settings.replace(unauthenticated_rate_limit_per_minute=5)


def test_unauthenticated_traffic_is_limited_per_address(guarded):
    from starlette.testclient import TestClient

    from hub.app import create_app

    hub = create_app(guarded)
    with TestClient(hub) as anonymous:
        statuses = [anonymous.get("/api/v1/agents").status_code for _ in range(8)]
        bad_key = anonymous.post(
            "/api/v1/agents", json={}, headers={"Authorization": "Bearer aeth_nope"}
        )
        secret = keys.create("fine", "viewer")[1]
        good = anonymous.get("/api/v1/agents", headers={"Authorization": f"Bearer {secret}"})
    assert statuses == [401] * 5 + [429] * 3
    assert bad_key.status_code == 429 and int(bad_key.headers["retry-after"]) >= 1
    assert good.status_code == 200  # a valid key is not held back by the address's failures


def test_bad_webhook_signatures_count_against_the_address(guarded):
    from starlette.testclient import TestClient

    from hub.app import create_app

    hub = create_app(guarded)
    with TestClient(hub) as client:
        admin = {"Authorization": f"Bearer {keys.create('admin', 'admin')[1]}"}
        body = {"kind": "generic", "slug": "flood", "webhook_secret": "s" * 32}
        integration = client.post("/api/v1/integrations", json=body, headers=admin)
        assert integration.status_code == 201, integration.text
        path = integration.json()["webhook_path"]
        before = audit_count(client, admin)
        statuses = [client.post(path, json={"x": 1}).status_code for _ in range(7)]
        assert audit_count(client, admin) == before  # none of them wrote a row
    assert statuses == [401] * 5 + [429] * 2


def audit_count(client, headers) -> int:
    return len(
        client.get("/api/v1/audit-log", params={"limit": 200}, headers=headers).json()["items"]
    )
