"""The contract validates, follows the house rules, and generated/ is current."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import httpx2
import pytest

from hub.core import spec
from tests.assertions import assert_headers_declared

ROOT = Path(__file__).resolve().parent.parent


def _tool(name: str):
    loader = importlib.util.spec_from_file_location(name, ROOT / "tools" / f"{name}.py")
    module = importlib.util.module_from_spec(loader)
    loader.loader.exec_module(module)
    return module


@pytest.mark.slow  # seconds of spec checking that make check also runs
def test_spec_is_valid_and_follows_the_house_rules():
    check_spec = _tool("check_spec")
    assert check_spec.main() == 0
    assert check_spec.check(check_spec.load_spec()) == []


@pytest.mark.slow  # seconds of spec checking that make check also runs
def test_house_rules_catch_a_missing_problem_response():
    check_spec = _tool("check_spec")
    broken = check_spec.load_spec()
    del broken["paths"]["/api/v1/agents"]["post"]["responses"]["409"]
    del broken["paths"]["/api/v1/agents"]["post"]["responses"]["415"]
    errors = check_spec.check(broken)
    assert errors == [
        "POST /api/v1/agents: does not declare 415",
        "POST /api/v1/agents: takes Idempotency-Key but does not declare 409",
    ]


@pytest.mark.slow  # seconds of spec checking that make check also runs
def test_house_rules_catch_a_response_without_the_headers_the_hub_sends():
    check_spec = _tool("check_spec")
    broken = check_spec.load_spec()
    created = broken["paths"]["/api/v1/agents"]["post"]["responses"]["201"]["headers"]
    del created["X-Request-Id"], created["ETag"], created["Idempotent-Replayed"]
    del broken["components"]["responses"]["Unavailable"]["headers"]["Retry-After"]
    errors = check_spec.check(broken)
    assert "POST /api/v1/agents: 201 does not declare the X-Request-Id header" in errors
    assert "POST /api/v1/agents: 201 does not declare the ETag header" in errors
    assert "POST /api/v1/agents: 201 does not declare the Idempotent-Replayed header" in errors
    assert "GET /api/v1/agents: 503 does not declare the Retry-After header" in errors


@pytest.mark.slow  # seconds of spec checking that make check also runs
def test_house_rules_catch_a_list_that_cannot_page():
    check_spec = _tool("check_spec")
    broken = check_spec.load_spec()
    broken["paths"]["/api/v1/providers"]["get"]["parameters"] = []
    errors = check_spec.check(broken)
    assert errors == [
        "GET /api/v1/providers: answers next_cursor but does not take limit and cursor"
    ]


def test_a_handler_sends_the_headers_its_module_names_for_it():
    check_spec = _tool("check_spec")
    assert check_spec.sends("handlers.agents", "create_agent", "ETag")  # through _one(...)
    assert not check_spec.sends("handlers.agents", "list_agents", "ETag")


@pytest.mark.slow  # seconds of spec checking that make check also runs
def test_house_rules_catch_an_operation_without_a_handler():
    check_spec = _tool("check_spec")
    broken = check_spec.load_spec()
    broken["paths"]["/api/v1/agents"]["get"]["operationId"] = "no_such_handler"
    errors = check_spec.check(broken)
    assert "GET /api/v1/agents: handlers.agents.no_such_handler does not exist" in errors
    assert "handlers/agents.py: list_agents is not an operation of the spec" in errors


@pytest.mark.slow  # seconds of spec checking that make check also runs
def test_generated_models_are_current():
    codegen = _tool("codegen")
    assert codegen.generate() == (ROOT / "generated" / "models.py").read_text()


def test_every_operation_has_one_policy_with_a_role():
    policies = spec.policies()
    assert len(policies) == 181
    assert {p.role for p in policies.values()} == {"public", "viewer", "operator", "admin"}
    confirm = sorted(p.operation_id for p in policies.values() if p.confirm)
    assert confirm == [
        "cancel_workflow_run",
        "delete_provider",
        "disable_plugin",
        "drain_runtime",
        "retry_dead_letter",
        "retry_workflow_run",
        "revoke_api_key",
        "rollback_plugin",
        "rollback_skill",
        "update_config",
    ]


def test_the_test_clients_fail_on_a_header_the_contract_does_not_declare(client, anon):
    assert assert_headers_declared in client.event_hooks["response"]
    assert assert_headers_declared in anon.event_hooks["response"]
    request = httpx2.Request("GET", "http://testserver/api/v1/agents")
    assert_headers_declared(httpx2.Response(200, headers={"X-Request-Id": "r"}, request=request))
    with pytest.raises(AssertionError, match="answered 200 with etag"):
        assert_headers_declared(httpx2.Response(200, headers={"ETag": '"1"'}, request=request))


def test_every_string_parameter_refuses_nul():
    """PostgreSQL text cannot hold NUL: a query or path string the contract let through would
    reach it and fail there. Each is bounded by a pattern, an enum or a format."""
    document = spec.load()

    def resolved(node: dict) -> dict:
        while "$ref" in node:
            target = document
            for part in node["$ref"].split("/")[1:]:
                target = target[part]
            node = target
        return node

    unbounded = []
    for path, item in document["paths"].items():
        for method, operation in item.items():
            if method == "parameters":
                continue
            for parameter in item.get("parameters", []) + operation.get("parameters", []):
                parameter = resolved(parameter)
                schema = resolved(parameter.get("schema", {}))
                is_string = parameter["in"] in {"query", "path"} and schema.get("type") == "string"
                if is_string and not {"pattern", "enum", "format"} & set(schema):
                    unbounded.append(f"{method.upper()} {path} {parameter['name']}")
    assert unbounded == []
