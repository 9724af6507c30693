"""The contract validates, follows the house rules, and generated/ is current."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from hub.core import spec

ROOT = Path(__file__).resolve().parent.parent


def _tool(name: str):
    loader = importlib.util.spec_from_file_location(name, ROOT / "tools" / f"{name}.py")
    module = importlib.util.module_from_spec(loader)
    loader.loader.exec_module(module)
    return module


def test_spec_is_valid_and_follows_the_house_rules():
    check_spec = _tool("check_spec")
    assert check_spec.main() == 0
    assert check_spec.check(check_spec.load_spec()) == []


def test_house_rules_catch_a_missing_problem_response():
    check_spec = _tool("check_spec")
    broken = check_spec.load_spec()
    del broken["paths"]["/api/v1/agents"]["post"]["responses"]["409"]
    del broken["paths"]["/api/v1/agents"]["post"]["responses"]["415"]
    errors = check_spec.check(broken)
    assert errors == ["POST /api/v1/agents: does not declare 415"]


def test_house_rules_catch_an_operation_without_a_handler():
    check_spec = _tool("check_spec")
    broken = check_spec.load_spec()
    broken["paths"]["/api/v1/agents"]["get"]["operationId"] = "no_such_handler"
    errors = check_spec.check(broken)
    assert "GET /api/v1/agents: handlers.agents.no_such_handler does not exist" in errors
    assert "handlers/agents.py: list_agents is not an operation of the spec" in errors


def test_generated_models_are_current():
    codegen = _tool("codegen")
    assert codegen.generate() == (ROOT / "generated" / "models.py").read_text()


def test_every_operation_has_one_policy_with_a_role():
    policies = spec.policies()
    assert len(policies) == 129
    assert {p.role for p in policies.values()} == {"public", "viewer", "operator", "admin"}
    confirm = sorted(p.operation_id for p in policies.values() if p.confirm)
    assert confirm == [
        "delete_provider",
        "drain_runtime",
        "retry_dead_letter",
        "revoke_api_key",
        "update_config",
    ]
