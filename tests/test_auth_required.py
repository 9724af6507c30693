"""Without credentials, every non-public operation answers 401; public ones answer."""

from __future__ import annotations

import re
import warnings

import pytest

from hub.app import create_app
from hub.core import spec

with warnings.catch_warnings():  # starlette warns that it prefers httpx2 to httpx
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

POLICIES = sorted(spec.policies().values(), key=lambda p: (p.path, p.method))
SAMPLE = {
    "agent_id": "assistant",
    "key_id": "key_x",
    "version": "1",
    "session_id": "ses_x",
    "message_id": "msg_x",
    "turn_id": "trn_x",
    "provider_id": "builtin",
    "task_id": "tsk_x",
    "tool_name": "current_time",
    "group_id": "memory",
    "plugin_id": "acme",
    "server_id": "files",
    "skill_id": "release-notes",
    "approval_id": "apr_x",
    "notification_id": "ntf_x",
    "dead_letter_id": "dlq_x",
    "key": "some-memory",
    "link_id": "1",
    "run_id": "run_x",
    "event_id": "1",
    "trace_id": "trace_x",
    "subscription_id": "sub_x",
    "project_id": "prj_x",
    "integration_id": "int_x",
    "slug": "github-x",
    "mapping_id": "map_x",
    "trigger_id": "trg_x",
    "schedule_id": "sch_x",
    "workflow_id": "triage",
    "model": "builtin/echo",  # a path parameter that keeps its slash
}


@pytest.fixture(scope="module")
def anon(module_settings):
    """One hub per backend for the module: these requests change nothing another one sees
    (they are refused, or public reads)."""
    with TestClient(create_app(module_settings)) as client:
        yield client


def _url(path: str) -> str:
    return re.sub(r"\{([^}]+)\}", lambda m: SAMPLE[m.group(1)], path)


@pytest.mark.parametrize(
    "policy", [p for p in POLICIES if p.role != "public"], ids=lambda p: p.operation_id
)
def test_non_public_operation_needs_a_key(anon, policy):
    response = anon.request(policy.method, _url(policy.path), headers={"X-Confirm": "yes"})
    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith("Bearer")
    if policy.path.startswith("/v1/"):  # the OpenAI-compatible API speaks OpenAI's errors
        assert response.headers["content-type"] == "application/json"
        assert response.json()["error"]["code"] == "unauthorized"
    else:
        assert response.headers["content-type"] == "application/problem+json"
        assert response.json()["code"] == "unauthorized"


@pytest.mark.parametrize(
    "policy", [p for p in POLICIES if p.role != "public"], ids=lambda p: p.operation_id
)
def test_a_wrong_key_is_401_too(anon, policy):
    response = anon.request(
        policy.method, _url(policy.path), headers={"X-API-Key": "aeth_not-a-key"}
    )
    assert response.status_code == 401


@pytest.mark.parametrize(
    "policy",
    [p for p in POLICIES if p.role == "public" and p.operation_id != "receive_webhook"],
    ids=lambda p: p.operation_id,
)
def test_public_operation_answers_without_a_key(anon, policy):
    response = anon.request(policy.method, _url(policy.path))
    assert response.status_code == 200


def test_inbound_webhooks_need_no_key_but_their_source_signature(anon):
    """No API key layer in front of webhooks: an unknown slug is 404, not 401 (the
    signature checks are in tests/handlers/test_webhooks.py)."""
    response = anon.post(_url("/api/v1/webhooks/{slug}"), json={"zen": "hi"})
    assert response.status_code == 404
    assert response.json()["code"] != "unauthorized"


def test_the_outline_public_list_is_exactly_what_the_spec_makes_public():
    public = {p.path for p in POLICIES if p.role == "public"}
    assert public == {
        "/health/live",
        "/health/ready",
        "/api/v1/status",
        "/api/v1/openapi.json",
        "/api/v1/openapi.yaml",
        "/metrics",
        "/.well-known/agent.json",
        "/api/v1/webhooks/{slug}",
    }
