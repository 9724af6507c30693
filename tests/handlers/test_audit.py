"""Behaviour of the audit log: every authenticated mutating request is recorded (successes
and 4xx alike; requests without a valid credential are counted in metrics instead), the list
filters and pages, and the hash chain detects edits and removals.
Runs on SQLite and PostgreSQL (see conftest)."""

from __future__ import annotations

import base64
import json
import re

import pytest

from db.audit import GENESIS, AuditEntry, chain_hash
from hub.core import crypto, signatures, spec
from hub.services import audit as audit_service
from tests.assertions import assert_problem
from tests.conftest import auth
from tests.factories import agent_body, make_agent

AUDIT = "/api/v1/audit-log"
VERIFY = "/api/v1/audit-log/verify"
AGENTS = "/api/v1/agents"
KEYS = "/api/v1/api-keys"
NOW = "2026-01-01T12:00:00.000Z"  # the fake clock's start, as the API writes it
SHA256_HEX = re.compile(r"^[0-9a-f]{64}$")


# --- helpers -----------------------------------------------------------------------------


def entries(client, **params) -> list[dict]:
    """One page of the audit log (up to 200 entries), newest first."""
    response = client.get(AUDIT, params={"limit": 200, **params})
    assert response.status_code == 200, response.text
    return response.json()["items"]


def latest(client) -> dict:
    return entries(client, limit=1)[0]


def stable(entry: dict) -> dict:
    """An entry without its server-made id and hash (checked separately)."""
    assert isinstance(entry["id"], int)
    assert SHA256_HEX.match(entry["hash"]), entry["hash"]
    return {name: value for name, value in entry.items() if name not in {"id", "hash"}}


def expected_entry(**fields) -> dict:
    entry = {
        "at": NOW,
        "actor_key_id": None,
        "actor_name": None,
        "operator": None,
        "operation_id": None,
        "method": "POST",
        "resource": AGENTS,
        "status": 201,
        "request_id": None,
    }
    entry.update(fields)
    return entry


def key_id(client, secret: str) -> str:
    return client.get("/api/v1/auth/me", headers=auth(secret)).json()["key_id"]


def forged_cursor(value) -> str:
    """A cursor in the server's encoding but with a key it never issued."""
    raw = json.dumps({"k": value}).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def make_activity(client, count: int) -> None:
    """``count`` audited requests: agent creates."""
    for _ in range(count):
        make_agent(client)


def verify(client) -> dict:
    response = client.get(VERIFY)
    assert response.status_code == 200, response.text
    return response.json()


# --- what is recorded --------------------------------------------------------------------


def test_a_create_is_recorded_with_everything_about_the_request(client, keyring, clock):
    admin_id = key_id(client, keyring["admin"])
    headers = {"X-Operator": "alice@example.com", "X-Request-Id": "req-create-1"}

    response = client.post(AGENTS, json=agent_body(id="logged"), headers=headers)

    assert response.headers["x-request-id"] == "req-create-1"
    assert stable(latest(client)) == expected_entry(
        actor_key_id=admin_id,
        actor_name="test admin",
        operator="alice@example.com",
        operation_id="create_agent",
        resource=f"{AGENTS}/logged",  # what was made, from its Location
        status=201,
        request_id="req-create-1",
    )


def test_an_update_is_recorded_with_its_resource_path(client, keyring, clock):
    make_agent(client, id="changed")

    client.patch(f"{AGENTS}/changed", json={"name": "New"}, headers={"X-Request-Id": "r-2"})

    assert stable(latest(client)) == expected_entry(
        actor_key_id=key_id(client, keyring["admin"]),
        actor_name="test admin",
        operation_id="update_agent",
        method="PATCH",
        resource=f"{AGENTS}/changed",
        status=200,
        request_id="r-2",
    )


def test_the_operator_is_null_without_the_header(client):
    make_agent(client)

    assert latest(client)["operator"] is None


def test_a_generated_request_id_is_recorded(client):
    response = client.post(AGENTS, json=agent_body())

    generated = response.headers["x-request-id"]
    assert generated
    assert latest(client)["request_id"] == generated


def test_an_unusable_request_id_is_replaced_and_the_replacement_recorded(client):
    response = client.post(AGENTS, json=agent_body(), headers={"X-Request-Id": "has spaces!"})

    replacement = response.headers["x-request-id"]
    assert replacement != "has spaces!"
    assert latest(client)["request_id"] == replacement


def test_every_kind_of_mutation_is_recorded_newest_first(client, keyring):
    make_agent(client, id="life")
    client.patch(f"{AGENTS}/life", json={"name": "Two"})
    client.post(f"{AGENTS}/life/versions/1/promote")
    client.post(f"{AGENTS}/life/rollback")
    client.post(f"{AGENTS}/life/clone", json={"id": "twin"})
    client.post(f"{AGENTS}/seed")
    client.delete(f"{AGENTS}/twin")
    made = client.post(KEYS, json={"name": "temp", "role": "viewer"}).json()
    client.delete(f"{KEYS}/{made['id']}", headers={"X-Confirm": "yes"})

    recorded = [
        (e["operation_id"], e["method"], e["resource"], e["status"]) for e in entries(client)
    ]

    assert recorded == [
        ("revoke_api_key", "DELETE", f"{KEYS}/{made['id']}", 204),
        ("create_api_key", "POST", f"{KEYS}/{made['id']}", 201),
        ("delete_agent", "DELETE", f"{AGENTS}/twin", 204),
        ("seed_agents", "POST", f"{AGENTS}/seed", 200),
        ("clone_agent", "POST", f"{AGENTS}/twin", 201),
        ("rollback_agent", "POST", f"{AGENTS}/life/rollback", 409),
        ("promote_agent_version", "POST", f"{AGENTS}/life/versions/1/promote", 200),
        ("update_agent", "PATCH", f"{AGENTS}/life", 200),
        ("create_agent", "POST", f"{AGENTS}/life", 201),
    ]


@pytest.mark.parametrize(
    ("method", "path", "kwargs", "status", "operation_id"),
    [
        ("POST", AGENTS, {"json": {"id": "x"}}, 400, "create_agent"),
        (
            "POST",
            AGENTS,
            {"content": b"{oops", "headers": {"Content-Type": "application/json"}},
            400,
            "create_agent",
        ),
        ("POST", AGENTS, {"data": {"id": "x"}}, 415, "create_agent"),
        ("POST", AGENTS, {"json": agent_body(id="known")}, 409, "create_agent"),
        ("PATCH", f"{AGENTS}/ghost", {"json": {"name": "x"}}, 404, "update_agent"),
        (
            "PATCH",
            f"{AGENTS}/known",
            {"json": {"name": "x"}, "headers": {"If-Match": '"9"'}},
            412,
            "update_agent",
        ),
        ("POST", f"{AGENTS}/known/versions/abc/promote", {}, 400, "promote_agent_version"),
        ("DELETE", f"{KEYS}/key_whatever", {}, 428, "revoke_api_key"),
    ],
    ids=[
        "invalid-body",
        "malformed-json",
        "wrong-media-type",
        "duplicate",
        "not-found",
        "stale-etag",
        "bad-path-parameter",
        "unconfirmed",
    ],
)
def test_a_failed_mutation_is_recorded_with_its_status(
    client, keyring, clock, method, path, kwargs, status, operation_id
):
    make_agent(client, id="known")
    kwargs = dict(kwargs)
    headers = {**kwargs.pop("headers", {}), "X-Request-Id": f"failed-{status}"}

    response = client.request(method, path, headers=headers, **kwargs)

    assert response.status_code == status, response.text
    assert stable(latest(client)) == expected_entry(
        actor_key_id=key_id(client, keyring["admin"]),
        actor_name="test admin",
        operation_id=operation_id,
        method=method,
        resource=path,
        status=status,
        request_id=f"failed-{status}",
    )


def test_a_forbidden_mutation_is_recorded_with_the_callers_key(client, keyring, clock):
    response = client.post(
        AGENTS,
        json=agent_body(),
        headers={**auth(keyring["viewer"]), "X-Operator": "vic", "X-Request-Id": "r-403"},
    )

    assert response.status_code == 403
    assert stable(latest(client)) == expected_entry(
        actor_key_id=key_id(client, keyring["viewer"]),
        actor_name="test viewer",
        operator="vic",
        operation_id="create_agent",
        status=403,
        request_id="r-403",
    )


@pytest.mark.parametrize(
    "credentials",
    [{}, {"Authorization": "Bearer aeth_not-a-real-key"}, {"X-API-Key": "aeth_nope"}],
    ids=["no-key", "unknown-bearer", "unknown-x-api-key"],
)
def test_an_unauthenticated_mutation_is_counted_not_audited(client, anon, clock, credentials):
    """A request without a valid credential writes no row (a flood would fill the log through
    the single writer); ``aether_unauthenticated_requests_total`` counts it (issue 13)."""
    headers = {**credentials, "X-Operator": "mallory", "X-Request-Id": "r-401"}
    reason = "missing" if not credentials else "invalid"
    before, written = unauthenticated(reason), entries(client)

    response = anon.post(AGENTS, json=agent_body(), headers=headers)

    assert response.status_code == 401
    assert entries(client) == written
    assert unauthenticated(reason) == before + 1


def test_a_revoked_key_mutation_is_counted_not_audited(client, anon):
    made = client.post(KEYS, json={"name": "brief", "role": "operator"}).json()
    client.delete(f"{KEYS}/{made['id']}", headers={"X-Confirm": "yes"})
    written, before = entries(client), unauthenticated("invalid")

    response = anon.post(AGENTS, json=agent_body(), headers=auth(made["secret"]))

    assert response.status_code == 401
    assert entries(client) == written
    assert unauthenticated("invalid") == before + 1


def unauthenticated(reason: str) -> float:
    from hub.core import metrics

    return metrics.UNAUTHENTICATED.labels(reason=reason)._value.get()


def test_an_idempotent_replay_is_recorded_too(client):
    body, headers = agent_body(), {"Idempotency-Key": "audit-replay"}
    client.post(AGENTS, json=body, headers=headers)

    client.post(AGENTS, json=body, headers={**headers, "X-Request-Id": "the-replay"})

    newest = entries(client)[:2]
    assert [(e["operation_id"], e["status"]) for e in newest] == [("create_agent", 201)] * 2
    assert newest[0]["request_id"] == "the-replay"


def test_reads_are_not_recorded(client, anon, keyring):
    make_agent(client, id="read-me")
    before = entries(client)

    client.get(AGENTS)
    client.get(f"{AGENTS}/read-me")
    client.get(f"{AGENTS}/read-me/versions")
    client.get(f"{AGENTS}/ghost")
    client.get("/api/v1/auth/me")
    client.get(KEYS)
    client.get(AUDIT)
    client.get(VERIFY)
    anon.get(AGENTS)
    client.get(KEYS, headers=auth(keyring["viewer"]))

    assert entries(client) == before


# --- listing -----------------------------------------------------------------------------


def test_the_log_is_newest_first(client):
    make_activity(client, 4)

    ids = [entry["id"] for entry in entries(client)]

    assert len(ids) == 4
    assert ids == sorted(ids, reverse=True)
    assert len(set(ids)) == 4


def test_the_log_pages_through_every_entry_once(client):
    make_activity(client, 7)
    everything = entries(client)

    pages, cursor = [], None
    while True:
        params = {"limit": 3, **({"cursor": cursor} if cursor else {})}
        response = client.get(AUDIT, params=params)
        assert response.status_code == 200, response.text
        pages.append(response.json())
        cursor = response.json()["next_cursor"]
        if cursor is None:
            break

    assert [len(page["items"]) for page in pages] == [3, 3, 1]
    assert [entry for page in pages for entry in page["items"]] == everything


def test_paging_does_not_shift_when_new_entries_arrive(client):
    make_activity(client, 4)
    before = entries(client)
    first = client.get(AUDIT, params={"limit": 2}).json()
    make_activity(client, 3)

    second = client.get(AUDIT, params={"limit": 2, "cursor": first["next_cursor"]}).json()

    assert first["items"] == before[:2]
    assert second["items"] == before[2:4]


def test_filter_by_actor(client, keyring):
    operator = auth(keyring["operator"])
    make_agent(client, id="by-admin")
    client.post(AGENTS, json=agent_body(id="by-operator"), headers=operator)
    client.patch(f"{AGENTS}/by-operator", json={"name": "Op"}, headers=operator)
    operator_id = key_id(client, keyring["operator"])

    found = entries(client, actor=operator_id)

    assert [(e["operation_id"], e["actor_key_id"]) for e in found] == [
        ("update_agent", operator_id),
        ("create_agent", operator_id),
    ]


def test_filter_by_action(client):
    make_agent(client, id="acted")
    client.patch(f"{AGENTS}/acted", json={"name": "One"})
    client.patch(f"{AGENTS}/acted", json={"name": "Two"})
    client.delete(f"{AGENTS}/acted")

    found = entries(client, action="update_agent")

    assert [e["operation_id"] for e in found] == ["update_agent", "update_agent"]


def test_filter_by_resource_prefix(client):
    make_agent(client, id="alpha")
    make_agent(client, id="beta")
    client.patch(f"{AGENTS}/alpha", json={"name": "A"})
    client.post(f"{AGENTS}/alpha/clone", json={"id": "gamma"})
    client.patch(f"{AGENTS}/beta", json={"name": "B"})

    found = entries(client, resource=f"{AGENTS}/alpha")

    assert [(e["operation_id"], e["resource"]) for e in found] == [
        ("update_agent", f"{AGENTS}/alpha"),
        ("create_agent", f"{AGENTS}/alpha"),
    ]  # the clone is recorded as what it made, /agents/gamma


def test_filter_by_since_includes_the_boundary(client, clock):
    make_agent(client, id="early")
    clock.advance(hours=1)
    make_agent(client, id="on-time")
    clock.advance(minutes=1)
    make_agent(client, id="late")

    found = entries(client, since="2026-01-01T13:00:00Z")

    assert [e["at"] for e in found] == ["2026-01-01T13:01:00.000Z", "2026-01-01T13:00:00.000Z"]


def test_filter_by_since_honours_the_offset(client, clock):
    make_agent(client)
    clock.advance(hours=2)
    make_agent(client)

    found = entries(client, since="2026-01-01T14:30:00+01:00")

    assert [e["at"] for e in found] == ["2026-01-01T14:00:00.000Z"]


def test_filters_combine(client, keyring, clock):
    operator = auth(keyring["operator"])
    client.post(AGENTS, json=agent_body(id="old-op"), headers=operator)
    clock.advance(hours=1)
    client.post(AGENTS, json=agent_body(id="new-op"), headers=operator)
    client.patch(f"{AGENTS}/new-op", json={"name": "x"}, headers=operator)
    make_agent(client, id="new-admin")

    found = entries(
        client,
        actor=key_id(client, keyring["operator"]),
        action="create_agent",
        since="2026-01-01T13:00:00Z",
    )

    assert len(found) == 1
    assert (found[0]["resource"], found[0]["at"]) == (
        f"{AGENTS}/new-op",
        "2026-01-01T13:00:00.000Z",
    )


def test_a_filter_that_matches_nothing_answers_an_empty_page(client):
    make_activity(client, 2)

    response = client.get(AUDIT, params={"action": "drain_runtime"})

    assert response.json() == {"items": [], "next_cursor": None}


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"since": "yesterday"}, "query.since"),
        ({"since": "2026-01-01T12:00:00"}, "query.since"),
        ({"action": "Create-Agent"}, "query.action"),
        ({"resource": "no-leading-slash"}, "query.resource"),
        ({"limit": 0}, "query.limit"),
        ({"actor": "has space"}, "query.actor"),
    ],
    ids=[
        "since-words",
        "since-without-zone",
        "action-pattern",
        "resource-pattern",
        "limit",
        "actor-pattern",
    ],
)
def test_bad_list_parameters_are_400_naming_the_field(client, params, field):
    make_activity(client, 1)

    response = client.get(AUDIT, params=params)

    body = assert_problem(response, 400, "validation_error")
    assert field in {error["field"] for error in body["errors"]}


@pytest.mark.parametrize(
    "cursor",
    ["not-a-cursor", forged_cursor("zzz"), forged_cursor(None)],
    ids=["not-base64-json", "text-key", "null-key"],
)
def test_a_garbage_cursor_is_400(client, cursor):
    make_activity(client, 1)

    response = client.get(AUDIT, params={"cursor": cursor})

    assert_problem(response, 400, "validation_error")


def test_a_garbage_cursor_is_reported_as_query_cursor(client):
    response = client.get(AUDIT, params={"cursor": "not-a-cursor"})

    body = assert_problem(response, 400, "validation_error")
    assert "query.cursor" in {error["field"] for error in body["errors"]}


@pytest.mark.parametrize("role", ["viewer", "operator"])
def test_the_log_needs_the_admin_role(client, keyring, role):
    headers = auth(keyring[role])

    assert_problem(client.get(AUDIT, headers=headers), 403, "role_too_low")
    assert_problem(client.get(VERIFY, headers=headers), 403, "role_too_low")


# --- the hash chain ----------------------------------------------------------------------


def test_verify_is_valid_on_an_empty_log(client):
    assert verify(client) == {
        "valid": True,
        "checked": 0,
        "first_broken_id": None,
        "after_id": None,
        "reason": None,
        "head_id": None,
        "head_hash": None,
    }


def test_verify_is_valid_after_activity(client, anon):
    make_activity(client, 3)
    client.post(AGENTS, json={"bad": True})
    anon.post(AGENTS, json=agent_body())  # without a credential: counted, not audited

    newest = entries(client)[0]
    assert verify(client) == {
        "valid": True,
        "checked": 4,
        "first_broken_id": None,
        "after_id": None,
        "reason": None,
        "head_id": newest["id"],
        "head_hash": newest["hash"],
    }


def test_each_entry_hash_is_distinct(client):
    make_activity(client, 3)

    hashes = [entry["hash"] for entry in entries(client)]

    assert len(set(hashes)) == 3


def test_verify_detects_an_edited_entry(client):
    make_activity(client, 5)
    oldest_first = [entry["id"] for entry in reversed(entries(client))]
    edited = oldest_first[2]

    AuditEntry.update(status=200).where(AuditEntry.seq == edited).execute()

    result = verify(client)
    assert {k: v for k, v in result.items() if k != "reason"} == {
        "valid": False,
        "checked": 2,
        "first_broken_id": edited,
        "after_id": oldest_first[1],
        "head_id": None,
        "head_hash": None,
    }
    assert isinstance(result["reason"], str) and result["reason"]


def test_verify_detects_an_edited_first_entry(client):
    make_activity(client, 3)
    first = entries(client)[-1]["id"]

    AuditEntry.update(operator="someone else").where(AuditEntry.seq == first).execute()

    result = verify(client)
    assert (result["valid"], result["checked"], result["first_broken_id"], result["after_id"]) == (
        False,
        0,
        first,
        None,
    )
    assert result["reason"]


def test_verify_detects_an_edit_that_also_rewrote_the_entry_hash(client):
    make_activity(client, 4)
    oldest_first = [entry["id"] for entry in reversed(entries(client))]
    forged = AuditEntry.get(AuditEntry.seq == oldest_first[1])
    forged.status = 500
    new_hash = forged.compute_hash(crypto.audit_key())  # even with the key: the next link breaks

    AuditEntry.update(status=500, hash=new_hash).where(AuditEntry.seq == forged.seq).execute()

    result = verify(client)
    assert (result["valid"], result["first_broken_id"], result["after_id"]) == (
        False,
        oldest_first[2],
        oldest_first[1],
    )
    assert result["reason"]


def test_verify_detects_a_removed_middle_entry(client):
    make_activity(client, 5)
    oldest_first = [entry["id"] for entry in reversed(entries(client))]

    AuditEntry.delete().where(AuditEntry.seq == oldest_first[2]).execute()

    result = verify(client)
    assert {k: v for k, v in result.items() if k != "reason"} == {
        "valid": False,
        "checked": 2,
        "first_broken_id": oldest_first[3],
        "after_id": oldest_first[1],
        "head_id": None,
        "head_hash": None,
    }
    assert isinstance(result["reason"], str) and result["reason"]


def test_edit_and_removal_are_told_apart(client):
    make_activity(client, 4)
    oldest_first = [entry["id"] for entry in reversed(entries(client))]
    AuditEntry.update(status=299).where(AuditEntry.seq == oldest_first[1]).execute()
    edited_reason = verify(client)["reason"]
    AuditEntry.delete().where(AuditEntry.seq == oldest_first[1]).execute()

    removed_reason = verify(client)["reason"]

    assert edited_reason != removed_reason


# --- the keyed chain (issue 13, break 12) -------------------------------------------------


def _rehash_from(seq: int, key: bytes | None) -> None:
    """Recompute every hash from entry ``seq`` on, as a forger would."""
    rows = list(AuditEntry.select().order_by(AuditEntry.seq))
    prev = GENESIS
    for row in rows:
        if row.seq >= seq:
            row.prev_hash = prev
            row.hash = chain_hash(prev, row.chained_fields(), key)
            AuditEntry.update(prev_hash=row.prev_hash, hash=row.hash).where(
                AuditEntry.seq == row.seq
            ).execute()
        prev = row.hash


def test_rewriting_rows_without_the_key_fails_verify(client):
    make_activity(client, 4)
    oldest_first = [entry["id"] for entry in reversed(entries(client))]
    AuditEntry.update(operator="mallory").where(AuditEntry.seq == oldest_first[1]).execute()

    _rehash_from(oldest_first[1], key=None)  # every later hash made again, without the key

    result = verify(client)
    assert (result["valid"], result["first_broken_id"]) == (False, oldest_first[1])


def test_downgrading_rows_to_unkeyed_fails_verify(client):
    make_activity(client, 3)
    AuditEntry.update(chain=1).execute()
    _rehash_from(0, key=None)

    assert verify(client)["valid"] is False


def test_entries_from_before_the_key_are_rekeyed_once(client):
    make_activity(client, 3)
    AuditEntry.update(chain=1).execute()
    _rehash_from(0, key=None)  # as the unkeyed chain of an older version wrote them

    written = len(entries(client))
    assert audit_service.rekey_legacy() == written
    assert audit_service.rekey_legacy() == 0
    assert verify(client)["valid"] is True


# --- the entry commits with the change (issue 13) ------------------------------------------

NOWHERE = "http://127.0.0.1:9/hook"  # never called: creates only store it


def creates(client) -> list[tuple[str, str, dict]]:
    """(method, path, body) of every create the spec declares a Location for, valid."""
    make_agent(client, id="audited")
    project = client.post("/api/v1/projects", json={"name": "P", "source": "github"}).json()["id"]
    for key in ("linked", "target"):
        client.post("/api/v1/memories", json={"key": key, "content": "c", "scope": "global"})
    action = {"kind": "create_task", "agent_id": "audited", "description": "Go"}
    schedule = client.post(
        "/api/v1/schedules", json={"name": "r", "cron": "0 * * * *", "action": action}
    ).json()["id"]
    wait = {"id": "waits", "steps": [{"id": "w", "kind": "wait", "seconds": 3600}]}
    client.post("/api/v1/workflows", json=wait)
    run = client.post("/api/v1/workflows/waits/runs", json={}).json()["id"]
    return [
        ("POST", f"/api/v1/workflow-runs/{run}/rerun", None),
        ("POST", "/api/v1/memories/linked/links", {"target": "target"}),
        ("POST", f"/api/v1/schedules/{schedule}/run", None),
        ("POST", KEYS, {"name": "k", "role": "viewer"}),
        ("POST", AGENTS, agent_body(id="made")),
        ("POST", f"{AGENTS}/audited/clone", {"id": "cloned"}),
        ("POST", "/api/v1/sessions", {"agent_id": "audited"}),
        ("PUT", "/api/v1/providers/extra", {"kind": "openai", "base_url": NOWHERE}),
        ("POST", "/api/v1/tasks", {"description": "d", "agent_id": "audited"}),
        (
            "POST",
            "/api/v1/tools",
            {
                "name": "lookup",
                "description": "Look up",
                "parameters": {"type": "object"},
                "endpoint": NOWHERE,
            },
        ),
        ("POST", "/api/v1/tool-groups", {"name": "kit", "tools": ["notify"]}),
        ("POST", "/api/v1/plugins", {"name": "kit-plugin", "version": "1.0.0"}),
        ("POST", "/api/v1/mcp-servers", {"id": "files", "url": "https://mcp.example.com/mcp"}),
        ("POST", "/api/v1/skills", {"skill_md": "---\nname: kit\ndescription: d\n---\n"}),
        ("POST", "/api/v1/skills/import", b"---\nname: imported\ndescription: d\n---\n"),
        ("POST", "/api/v1/memories", {"key": "m", "content": "c", "scope": "global"}),
        ("POST", "/api/v1/events", {"type": "deploy.finished", "payload": {}}),
        (
            "POST",
            "/api/v1/subscriptions",
            {"url": NOWHERE, "types": ["*"], "secret": "whsec-0123456789abcdef"},
        ),
        ("POST", "/api/v1/projects", {"name": "Q", "source": "github"}),
        (
            "POST",
            "/api/v1/integrations",
            {"kind": "github", "slug": "s", "name": "S", "project_id": project},
        ),
        ("POST", "/api/v1/event-mappings", {"source": "github", "event": "x", "type": "a.b"}),
        (
            "POST",
            "/api/v1/triggers",
            {
                "name": "t",
                "event_type": "a.*",
                "action": {"kind": "create_task", "agent_id": "audited", "description": "Go"},
            },
        ),
        (
            "POST",
            "/api/v1/schedules",
            {
                "name": "s",
                "cron": "0 * * * *",
                "action": {"kind": "create_task", "agent_id": "audited", "description": "Go"},
            },
        ),
        (
            "POST",
            "/api/v1/workflows",
            {"id": "audited-flow", "steps": [{"id": "w", "kind": "wait", "seconds": 3600}]},
        ),
        ("POST", "/api/v1/workflows/audited-flow/runs", {"input": {}}),
    ]


def test_every_create_names_the_new_resource(client):
    made = creates(client)
    declared = {(p.method, p.path) for p in spec.policies().values() if p.names_created}
    assert len(made) == len(declared), "a create with a Location is missing here"
    for method, path, body in made:
        headers = {"X-Request-Id": "c-1"}
        if isinstance(body, bytes):  # a SKILL.md upload
            headers["Content-Type"] = "text/markdown"
            response = client.request(method, path, content=body, headers=headers)
        else:
            response = client.request(method, path, json=body, headers=headers)
        assert response.status_code == 201, (path, response.text)
        entry = latest(client)
        assert entry["request_id"] == "c-1"
        assert (entry["resource"], entry["status"]) == (response.headers["location"], 201)


def test_the_entry_commits_with_the_change_even_if_the_answer_fails(client, monkeypatch):
    """The entry is written inside the transaction that creates the agent: a failure after
    the commit (here, rendering the answer) cannot lose it."""
    from db.agents import Agent

    def broken(self):
        raise RuntimeError("the process died after the commit")

    monkeypatch.setattr(Agent, "to_api", broken)
    response = client.post(AGENTS, json=agent_body(id="kept"), headers={"X-Request-Id": "r-c"})
    monkeypatch.undo()

    assert response.status_code == 500
    assert client.get(f"{AGENTS}/kept").status_code == 200
    entry = latest(client)
    assert (entry["request_id"], entry["resource"], entry["status"]) == (
        "r-c",
        f"{AGENTS}/kept",
        201,  # what the committed change answers; the 500 came after it
    )


def test_no_change_commits_without_its_entry(client, monkeypatch):
    """The other way round: when the entry cannot be written, the change rolls back."""
    writes = []
    real_append = audit_service._append

    def failing_once(fields):
        writes.append(fields)
        if len(writes) == 1:
            raise RuntimeError("the audit write failed")
        return real_append(fields)

    monkeypatch.setattr(audit_service, "_append", failing_once)
    response = client.post(AGENTS, json=agent_body(id="rolled-back"))
    monkeypatch.undo()

    assert response.status_code == 500
    assert client.get(f"{AGENTS}/rolled-back").status_code == 404
    assert writes[0]["resource"] == f"{AGENTS}/rolled-back"  # tried inside the transaction
    assert latest(client)["status"] == 500  # and the failure itself is recorded after it


def test_a_request_writes_one_entry_however_many_transactions(client):
    """Seeding creates several agents, each in its own transaction: one entry."""
    before = len(entries(client))

    response = client.post(f"{AGENTS}/seed", headers={"X-Request-Id": "seeded"})

    assert response.status_code == 200
    assert len(response.json()["created"]) > 1
    written = entries(client)
    assert len(written) == before + 1
    assert (written[0]["request_id"], written[0]["status"]) == ("seeded", 200)


def test_a_webhook_entry_records_accepted_then_duplicate(client, anon):
    secret = "whsec-correct-horse"
    made = client.post(
        "/api/v1/integrations",
        json={"kind": "generic", "slug": "hooked", "name": "H", "webhook_secret": secret},
    )
    assert made.status_code == 201, made.text
    path = made.json()["webhook_path"]
    body = b'{"x": 1}'
    headers = {
        "Content-Type": "application/json",
        "X-Delivery-Id": "d-1",
        "X-Signature-256": signatures.sign(secret, body),
    }
    statuses = [anon.post(path, content=body, headers=headers).status_code for _ in range(2)]

    assert statuses == [202, 200]
    newest = entries(client)[:2]
    assert [e["status"] for e in newest] == [200, 202]


# --- refused before routing (issue 13) -------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "kwargs", "status"),
    [
        (
            "POST",
            AGENTS,
            {"content": b"x" * (1024 * 1024 + 1), "headers": {"Content-Type": "text/plain"}},
            413,
        ),
        ("PUT", AGENTS, {"json": {}}, 405),
        ("POST", "/api/v1/nowhere", {"json": {}}, 404),
        ("POST", f"{AGENTS}/", {"json": {}}, 307),
        ("DELETE", "/health/live", {}, 405),
    ],
    ids=["too-large", "wrong-method", "unknown-path", "redirect", "outside-the-api"],
)
def test_a_request_refused_before_routing_is_one_entry_without_its_body(
    client, anon, keyring, method, path, kwargs, status
):
    kwargs = {**kwargs, "headers": {**kwargs.get("headers", {}), "X-Request-Id": "edge"}}
    before = len(entries(client))

    response = client.request(method, path, follow_redirects=False, **kwargs)

    assert response.status_code == status
    written = entries(client)
    assert len(written) == before + 1
    assert stable(written[0]) == expected_entry(
        at=written[0]["at"],
        actor_key_id=key_id(client, keyring["admin"]),
        actor_name="test admin",
        method=method,
        resource=path,
        status=status,
        request_id="edge",
    )

    # without a valid key: counted, not audited
    counted = unauthenticated("missing")
    response = anon.request(method, path, follow_redirects=False, **kwargs)
    assert response.status_code in {status, 401}
    assert len(entries(client)) == before + 1
    assert unauthenticated("missing") == counted + 1


MUTATIONS = sorted(
    (p.method, p.path, p.operation_id, bool(p.body_media_types))
    for p in spec.policies().values()
    if p.method in {"POST", "PUT", "PATCH", "DELETE"}
)


def test_every_mutating_operation_writes_exactly_one_entry_with_its_answer(client, anon):
    """Each mutating operation, with made-up ids and an empty body (mostly refused, some
    done): one entry per request, recording the status it answered."""
    for number, (method, path, operation_id, has_body) in enumerate(MUTATIONS):
        url = re.sub(r"\{[^}]+\}", "nope", path)
        request_id = f"sweep-{number}"
        kwargs = {"json": {}} if has_body else {}
        headers = {"X-Request-Id": request_id, "X-Confirm": "yes"}
        caller = anon if url.startswith("/api/v1/webhooks/") else client
        response = caller.request(method, url, headers=headers, **kwargs)
        assert response.status_code < 500, (operation_id, response.text)
        written = [e for e in entries(client, limit=5) if e["request_id"] == request_id]
        assert [(e["operation_id"], e["status"]) for e in written] == [
            (operation_id, response.status_code)
        ], operation_id
