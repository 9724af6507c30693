"""Schemathesis over every operation of openapi.yaml, all checks, on SQLite and on PostgreSQL.

The first run is authenticated as admin through schemathesis' OpenAPI-aware auth
(``AUTHENTICATED``: the ``bearerAuth`` scheme), so generated requests reach the handlers;
``ignored_auth`` then checks, per operation, that the same request without the credential
and with an invalid one is refused. (Until 2026-12-02 the key was set as a plain header
inside the test, after schemathesis had built it, and the generated credentials won: that
run was refused with 401 almost everywhere.)

Both generation modes (positive and negative), the examples phase (the contract's examples)
and the coverage phase run (the stateful phase, over the contract's ``links``, is
``tests/test_contract_stateful.py``), and schemathesis'
``ignored_auth`` check probes every operation without and with bad credentials. A second run
sends generated requests for every operation with no credentials at all: only the public
ones may answer anything but 401 (``tests/test_auth_required.py`` also walks them by hand);
it runs the examples and generated phases, not the coverage phase (see ``anonymous``).

**Both backends, one generation.** Each generated case runs against the SQLite hub in this
process and then, unchanged, against a real ``aether serve`` on PostgreSQL (this worker's
throwaway server), with every check both times: schemathesis' generation (the costly part)
happens once per case, and PostgreSQL also meets the real HTTP server. Both hubs know the same
``AETHER_ADMIN_TOKEN``. The run without credentials (refused before any query) runs against
the SQLite hub only. Hypothesis keeps no example database here (``database=None``).

Check configuration (the only deviations from schemathesis' defaults, each with its reason):
- ``missing_required_header`` also accepts 428: the contract answers a missing ``X-Confirm``
  on a destructive operation with 428 ``confirmation_required`` (api-outline, confirmation).
- ``negative_data_rejection`` also accepts 413: a generated invalid body over
  ``AETHER_BODY_LIMIT`` is refused for its size before its shape is read (schemathesis found
  a 17 MB one on ``/v1/chat/completions``), which is a rejection all the same.
- ``positive_data_acceptance`` also accepts 412: a schema-valid ``If-Match`` that is not the
  resource's current ETag is a precondition failure, by definition of ``If-Match``.
- ... and 422: a schema-valid body can still name what does not exist or cannot be used — an
  agent id no agent has, an unknown IANA time zone, a jq filter that does not compile, owners
  that do not fit a memory's scope, an `openai` provider without a `base_url`, a search query
  without a word. A schema cannot say these; 422 (Unprocessable Content) is the status that
  does, always naming the field. Anything else a schema-valid request meets stays a failure.
- Positive cases drop a generated ``cursor``: cursors are opaque tokens the server issues, so
  a random schema-valid string is rightly rejected with 400; paging is covered by handler tests.
- A generated provider ``base_url`` is replaced by a loopback address nothing listens on: the
  fuzzer must never make the hub send traffic off this machine. Provider calls then fail fast,
  which exercises the failure paths; real upstream calls are covered by handler tests.
  The same holds for HTTP tools' ``endpoint``, the ``http_request`` tool's ``url``
  argument and a subscription's ``url``: the outbound policy refuses the loopback address.
- On ``/v1`` (OpenAI's API), ``positive_data_acceptance`` is replaced by its own check: a
  schema-valid request may be refused with 400, as OpenAI refuses every request it cannot
  serve (``invalid_request_error``) — a tool message answering no call, embeddings without
  the semantic extra — but the refusal must be OpenAI's error object naming its ``param``.
- ``update_config``: a valid generated ``rate_limit_per_minute`` is sent as 0 (no limit),
  and each such case is followed by a ``PATCH`` back to the settings the run started with:
  a limit of 35 a minute, or metrics made private, would change every later case of the
  module. The rate limit itself is covered by handler tests.
- ``application/yaml`` answers are checked as text (``_yaml_as_text``): the one such answer,
  ``GET /api/v1/openapi.yaml``, is the contract's bytes, declared as a binary string.
- ``GET /api/v1/events/stream`` is called with ``follow=false`` (the replay, then the end):
  a live stream never ends, so no response would ever complete. The live stream is covered
  by tests/events/test_event_stream.py (the app with its runtime running) and, across two
  ``aether serve`` processes, by tests/runtime/test_multiprocess.py.
- The anonymous run accepts a 401 from ``POST /api/v1/webhooks/{slug}`` when it is the
  webhook's own signature check (code ``invalid_signature``), not the API-key layer: inbound
  webhooks are public and authenticated by their source's signature instead.
"""

from __future__ import annotations

import functools
import inspect
import re
import shutil
import uuid

import httpx
import jsonschema
import pytest
import schemathesis
import schemathesis.pytest._test_builder as schemathesis_builder
from hypothesis import HealthCheck, settings
from schemathesis import GenerationMode
from schemathesis.config import SchemathesisConfig
from schemathesis.core.media_types import YAML_MEDIA_TYPES
from schemathesis.specs.openapi.checks import positive_data_acceptance
from starlette.testclient import TestClient

from db import base as db_base
from hub.app import create_app
from hub.core import spec
from tests.conftest import BACKENDS, PG_TEMPLATE, hub_settings
from tests.servers import TOKEN, Processes, hub_env

_build_operation_test = schemathesis_builder.build_operation_test
_built: dict[tuple[str, str], object] = {}  # (test, operation): built once per process


def _build_when_run(**build):
    """Schemathesis builds each operation's test, its coverage-phase cases included, when it
    collects: every pytest-xdist worker paid ~27 s to build all 254 before running any. This
    builds the same test, from the configuration as it was at collection, the first time its
    item runs, on the one worker that runs it.
    (Patched: ``schemathesis.pytest._test_builder.build_operation_test``, schemathesis 4.32.)"""
    test = build["test_func"]

    @functools.wraps(test, updated=())  # not its __dict__: hypothesis' @settings stay with it
    def run(*args, **kwargs):
        key = (test.__qualname__, build["operation"].label)
        built = _built.get(key)
        if built is None:
            built = _built[key] = _build_operation_test(**build)
        run.__dict__.update(built.__dict__)  # schemathesis' marks, read after the run
        return built(*args, **kwargs)

    signature = inspect.signature(test)  # what hypothesis leaves: the fixtures, not ``case``
    run.__signature__ = signature.replace(
        parameters=[p for name, p in signature.parameters.items() if name != "case"]
    )
    del run.__wrapped__
    return run


schemathesis_builder.build_operation_test = _build_when_run


class BoundApp:
    """The ASGI app schemathesis calls; the fixture binds it to the SQLite hub (the database
    is process-global, so a hub cannot be created at import time)."""

    def __init__(self) -> None:
        self.target = None

    async def __call__(self, scope, receive, send) -> None:
        if self.target is None:
            raise RuntimeError("no hub bound: use the contract_hub fixture")
        await self.target(scope, receive, send)


bound = BoundApp()
NOWHERE = "http://127.0.0.1:9/v1"  # loopback, the discard port: refused at once
# The admin credential as schemathesis' OpenAPI-aware auth (not a fixed header): its cases
# then carry it as their explicit auth, drop the generated value of the other scheme, and
# ``ignored_auth`` probes each operation without it and with an invalid one.
AUTHENTICATED = SchemathesisConfig.from_dict(
    {"auth": {"openapi": {"bearerAuth": {"bearer": TOKEN}}}}
)


@schemathesis.deserializer(*YAML_MEDIA_TYPES)  # each: any of them matches application/yaml
def _yaml_as_text(context, response) -> str:
    """``GET /api/v1/openapi.yaml`` answers the contract's text, declared ``type: string,
    format: binary`` (the generated clients read it as bytes, compared with the file by their
    suites); schemathesis' own YAML deserializer would check the parsed document instead."""
    return response.content.decode(response.encoding or "utf-8")


schema = schemathesis.openapi.from_path(str(spec.SPEC_PATH), config=AUTHENTICATED)
schema.app = bound
schema.config.update(base_url="http://testserver")
schema.config.checks.missing_required_header.expected_statuses = [
    "400", "401", "403", "406", "415", "422", "428",
]  # fmt: skip
schema.config.checks.negative_data_rejection.expected_statuses = [
    "400", "401", "403", "404", "405", "406", "409", "413", "415", "422", "428", "429", "5xx",
]  # fmt: skip
schema.config.checks.positive_data_acceptance.expected_statuses = [
    "2xx", "3xx", "401", "403", "404", "409", "412", "422", "429",
]  # fmt: skip


@pytest.fixture(scope="module")
def contract_hub(request, tmp_path_factory, sqlite_template):
    """The SQLite hub, in this process (``bound``), for the whole module. PostgreSQL's
    session fixtures run first when the run includes it: building its template database
    opens the process-wide database proxy, which would otherwise take this hub's place."""
    if "postgresql" in BACKENDS:
        request.getfixturevalue("pg_admin")
    path = tmp_path_factory.mktemp("contract") / "hub.db"
    shutil.copyfile(sqlite_template, path)
    data = tmp_path_factory.mktemp("contract-data")
    settings = hub_settings(f"sqlite:///{path}", data, admin_token=TOKEN)
    bound.target = create_app(settings)
    yield TestClient(bound.target, base_url="http://testserver", headers=ADMIN)
    bound.target = None
    if db_base.database.obj is not None and not db_base.database.is_closed():
        db_base.database.close()


@pytest.fixture(scope="module")
def postgresql_hub(request, tmp_path_factory):
    """The PostgreSQL hub: a real ``aether serve`` on a database of this worker's throwaway
    server, or None when the run leaves PostgreSQL out (``AETHER_TEST_BACKENDS``)."""
    if "postgresql" not in BACKENDS:
        yield None
        return
    server, admin = request.getfixturevalue("pg_server"), request.getfixturevalue("pg_admin")
    name = "contract_" + uuid.uuid4().hex[:12]
    admin.execute(f"CREATE DATABASE {name} TEMPLATE {PG_TEMPLATE}")
    hubs = Processes()
    env = hub_env(
        server.url_for(name),
        tmp_path_factory.mktemp("contract-pg"),
        AETHER_RESPONSE_VALIDATION="true",
        AETHER_HEARTBEAT_SECONDS="3600",
        AETHER_LOG_LEVEL="critical",
    )
    yield hubs.serve(env)
    hubs.stop_all()
    admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def _on_postgresql(case, url: str | None, excluded: list) -> None:
    """The same case against the PostgreSQL hub, every check again."""
    if url is None:
        return
    operation, schema_of_case = case.operation, case.operation.schema
    apps = operation.app, schema_of_case.app
    operation.app = schema_of_case.app = None  # over HTTP (checks' own requests too)
    try:
        case.call_and_validate(base_url=url, excluded_checks=excluded)
    except Exception as failure:
        failure.add_note(f"(on PostgreSQL: the aether serve at {url})")
        raise
    finally:
        operation.app, schema_of_case.app = apps


def _a_url(value) -> bool:
    """A generated value the hub could call out to (an invalid one, a negative case's point,
    is left as generated: the hub must refuse it, and it reaches nothing)."""
    return isinstance(value, str) and re.match(r"^https?://[^\s]+$", value) is not None


def _valid_member(case, name: str) -> bool:
    """Whether the body's member ``name`` is valid against its schema (replacing an invalid
    one, a negative case's point, would make the case valid)."""
    raw = spec.load()
    body = case.operation.definition.raw.get("requestBody", {})
    schema = body.get("content", {}).get("application/json", {}).get("schema", {})
    while "$ref" in schema:
        schema = raw["components"]["schemas"][schema["$ref"].rsplit("/", 1)[-1]]
    member = schema.get("properties", {}).get(name)
    if member is None:
        return True
    while "$ref" in member:
        member = raw["components"]["schemas"][member["$ref"].rsplit("/", 1)[-1]]
    return jsonschema.Draft4Validator(member).is_valid(case.body[name])


def _positive(case) -> bool:
    meta = getattr(case, "_meta", None)
    return getattr(getattr(meta, "generation", None), "mode", None) == GenerationMode.POSITIVE


ADMIN = {"Authorization": f"Bearer {TOKEN}", "X-Confirm": "yes"}
# The contract hubs' runtime-tunable settings (ConfigUpdate's members), as they start
RESTORED = {"log_level": "error", "rate_limit_per_minute": 0, "metrics_public": True}


def _restore_config(case, sqlite_hub: TestClient, postgresql_url: str | None) -> None:
    """``update_config`` cases change the hub for every later case of the module (a rate
    limit of 1, metrics made private): put the settings back after each one."""
    if case.operation.definition.raw["operationId"] != "update_config":
        return
    answers = [sqlite_hub.patch("/api/v1/config", json=RESTORED)]
    if postgresql_url is not None:
        answers.append(httpx.patch(f"{postgresql_url}/api/v1/config", json=RESTORED, headers=ADMIN))
    for response in answers:
        assert response.status_code == 200, response.text


def _adjust(case) -> None:
    """The adjustments of the module docstring, made to a case before it is sent."""
    if _positive(case) and case.query and "cursor" in case.query:
        del case.query["cursor"]
    if isinstance(case.body, dict):
        for name in ("base_url", "endpoint", "url"):  # providers, HTTP tools, subscriptions
            if _a_url(case.body.get(name)) and _valid_member(case, name):
                case.body[name] = NOWHERE
        arguments = case.body.get("arguments")
        if isinstance(arguments, dict) and _a_url(arguments.get("url")):  # http_request
            arguments["url"] = NOWHERE
    if case.operation.definition.raw["operationId"] == "update_config" and isinstance(
        case.body, dict
    ):
        limit = case.body.get("rate_limit_per_minute")
        if isinstance(limit, int) and not isinstance(limit, bool) and 0 <= limit <= 1_000_000:
            case.body["rate_limit_per_minute"] = 0  # a valid limit would throttle the run
    if case.operation.definition.raw["operationId"] == "stream_events":
        case.query = {**(case.query or {}), "follow": "false"}


def _openai(case) -> bool:
    """/v1 speaks OpenAI's API, which refuses what a schema cannot say (a tool message that
    answers no call, embeddings this hub cannot make) as 400 invalid_request_error, not 422:
    there a schema-valid request may be a 400 — in OpenAI's shape, naming the param."""
    return case.operation.path.startswith("/v1/")


def _excluded(case) -> list:
    return [positive_data_acceptance] if _openai(case) else []


def _check_openai_refusal(case, response) -> None:
    if _openai(case) and _positive(case) and response.status_code == 400:
        error = response.json()["error"]
        assert error["param"] and error["code"], response.text


@schema.parametrize()
# 20 generated cases per operation and mode, besides the examples and coverage phases (which
# take most of this run's time: docs/architecture.md, 2026-12-04); it was 30.
@settings(max_examples=20, deadline=None, suppress_health_check=list(HealthCheck), database=None)
def test_every_operation_conforms(case, contract_hub, postgresql_hub):
    _adjust(case)
    excluded = _excluded(case)
    try:
        response = case.call_and_validate(excluded_checks=excluded)
        _check_openai_refusal(case, response)
        _on_postgresql(case, postgresql_hub, excluded)
    finally:
        _restore_config(case, contract_hub, postgresql_hub)


# The second run: the same generated requests without any credentials. Every operation that
# is not public must answer 401 (and never run); public ones must not.
anonymous = schemathesis.openapi.from_path(str(spec.SPEC_PATH))
anonymous.app = bound
anonymous.config.update(base_url="http://testserver")
anonymous.config.generation.update(modes=[GenerationMode.POSITIVE])
# Its question is one status per operation (401 unless public): the examples and five
# generated requests ask it; the coverage phase's boundary values of each body (20 s of this
# run's 100 s, 2026-12-04) cannot change the answer of an auth check that runs before the
# body is read.
anonymous.config.phases.coverage.enabled = False
PUBLIC = {policy.operation_id for policy in spec.policies().values() if policy.role == "public"}


@anonymous.parametrize()
@settings(max_examples=5, deadline=None, suppress_health_check=list(HealthCheck), database=None)
def test_without_credentials_only_public_operations_answer(case, contract_hub):
    for name in ("Authorization", "X-API-Key"):
        (case.headers or {}).pop(name, None)
    response = case.call()
    if case.operation.definition.raw["operationId"] in PUBLIC:
        if response.status_code == 401:  # only a webhook's own signature check may say so
            assert response.json()["code"] == "invalid_signature", response.text
    else:
        assert response.status_code == 401, response.text
        body = response.json()
        assert body.get("error", body)["code"] == "unauthorized"
