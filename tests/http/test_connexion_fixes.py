"""One test per change ``hub.http.connexion_fixes`` makes to Connexion: each fails if the fix
stops being applied or Connexion changes under it."""

from __future__ import annotations

import copy

from connexion.spec import OpenAPISpecification, Specification

from hub.core import spec
from hub.http import connexion_fixes
from tests.assertions import assert_problem, error_fields
from tests.factories import make_agent


def test_a_path_parameter_of_the_wrong_type_is_a_400_naming_it(client):
    make_agent(client, id="typed")
    response = client.post("/api/v1/agents/typed/versions/abc/promote")
    assert_problem(response, 400, "validation_error")
    assert error_fields(response) == {"path.version"}


def test_an_operation_declaring_problem_json_answers_its_plain_json(client):
    agent = make_agent(client, id="plain")
    response = client.get("/api/v1/agents/plain")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert response.json()["id"] == agent["id"]


def test_a_204_is_not_labelled_a_problem(client):
    make_agent(client, id="gone")
    response = client.delete("/api/v1/agents/gone")
    assert response.status_code == 204
    assert "problem" not in response.headers.get("content-type", "")


def test_a_document_is_validated_once_per_process(app, monkeypatch):
    """The app was built: its document is known, and validating it again does no work."""
    assert OpenAPISpecification._validate_spec.__func__ is connexion_fixes._validate_spec_once
    raw = copy.deepcopy(spec.load())
    assert connexion_fixes._fingerprint(raw) in connexion_fixes._validated
    calls = []
    monkeypatch.setattr(connexion_fixes, "_validate_spec", lambda *a: calls.append(a))
    OpenAPISpecification._validate_spec(raw)
    assert calls == []


def test_apps_built_from_one_document_share_its_parsed_specification(app):
    raw = copy.deepcopy(spec.load())
    first = OpenAPISpecification.load(raw)
    assert OpenAPISpecification.load(copy.deepcopy(raw)) is first
    changed = copy.deepcopy(raw)
    changed["info"]["title"] = "another document"
    assert OpenAPISpecification.load(changed) is not first
    assert isinstance(first, Specification)
