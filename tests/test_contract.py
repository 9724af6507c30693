"""Schemathesis over every operation of openapi.yaml, authenticated as admin, all checks, on
SQLite and on PostgreSQL.

Both generation modes (positive and negative) and the coverage phase run, and schemathesis'
``ignored_auth`` check probes every operation without and with bad credentials. A second run
sends generated requests for every operation with no credentials at all: only the public
ones may answer anything but 401 (``tests/test_auth_required.py`` also walks them by hand).

Check configuration (the only deviations from schemathesis' defaults, each with its reason):
- ``missing_required_header`` also accepts 428: the contract answers a missing ``X-Confirm``
  on a destructive operation with 428 ``confirmation_required`` (api-outline, confirmation).
- ``positive_data_acceptance`` also accepts 412: a schema-valid ``If-Match`` that is not the
  resource's current ETag is a precondition failure, by definition of ``If-Match``.
- Positive cases drop a generated ``cursor``: cursors are opaque tokens the server issues, so
  a random schema-valid string is rightly rejected with 400; paging is covered by handler tests.
- A generated provider ``base_url`` is replaced by a loopback address nothing listens on: the
  fuzzer must never make the hub send traffic off this machine. Provider calls then fail fast,
  which exercises the failure paths; real upstream calls are covered by handler tests.
  The same holds for HTTP tools' ``endpoint``, the ``http_request`` tool's ``url``
  argument and a subscription's ``url``: the outbound policy refuses the loopback address.
- ``GET /api/v1/events/stream`` is called with ``follow=false`` (the replay, then the end):
  a live stream never ends, so no response would ever complete. The live stream is covered
  by tests/events/test_event_stream.py (the app with its runtime running) and, across two
  ``aether serve`` processes, by tests/runtime/test_multiprocess.py.
- The anonymous run accepts a 401 from ``POST /api/v1/webhooks/{slug}`` when it is the
  webhook's own signature check (code ``invalid_signature``), not the API-key layer: inbound
  webhooks are public and authenticated by their source's signature instead.
"""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis import GenerationMode

from db import base as db_base
from hub.app import create_app
from hub.core import spec
from hub.services import keys
from hub.settings import Settings
from tests.conftest import BACKENDS


class BoundApp:
    """The ASGI app schemathesis calls; the fixture binds it to the hub of each backend (the
    database is process-global, so a hub cannot be created at import time)."""

    def __init__(self) -> None:
        self.target = None

    async def __call__(self, scope, receive, send) -> None:
        if self.target is None:
            raise RuntimeError("no hub bound: use the contract_hub fixture")
        await self.target(scope, receive, send)


bound = BoundApp()
NOWHERE = "http://127.0.0.1:9/v1"  # loopback, the discard port: refused at once
schema = schemathesis.openapi.from_path(str(spec.SPEC_PATH))
schema.app = bound
schema.config.update(base_url="http://testserver")
schema.config.checks.missing_required_header.expected_statuses = [
    "400", "401", "403", "406", "415", "422", "428",
]  # fmt: skip
schema.config.checks.positive_data_acceptance.expected_statuses = [
    "2xx", "3xx", "401", "403", "404", "409", "412", "429",
]  # fmt: skip


@pytest.fixture(scope="module", params=BACKENDS)
def contract_hub(request, tmp_path_factory):
    """One hub per backend for the whole module, with an admin key."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp('contract') / 'hub.db'}"
    else:
        url = request.getfixturevalue("pg_server").create_database("contract")
    settings = Settings(
        data_dir=str(tmp_path_factory.mktemp("contract-data")),
        database_url=url,
        rate_limit_per_minute=0,
        response_validation=True,
        heartbeat_seconds=3600,
        log_level="critical",
    )
    bound.target = create_app(settings)
    _, secret = keys.create("contract", "admin")
    yield {"Authorization": f"Bearer {secret}"}
    bound.target = None
    db_base.database.close()
    if request.param == "postgresql":
        request.getfixturevalue("pg_server").drop_database("contract")


def _positive(case) -> bool:
    meta = getattr(case, "_meta", None)
    return getattr(getattr(meta, "generation", None), "mode", None) == GenerationMode.POSITIVE


@schema.parametrize()
@settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck))
def test_every_operation_conforms(case, contract_hub):
    case.operation.schema.config.update(headers=contract_hub)
    if _positive(case) and case.query and "cursor" in case.query:
        del case.query["cursor"]
    if isinstance(case.body, dict):
        for name in ("base_url", "endpoint", "url"):  # providers, HTTP tools, subscriptions
            if name in case.body:
                case.body[name] = NOWHERE
        arguments = case.body.get("arguments")
        if isinstance(arguments, dict) and "url" in arguments:  # the http_request tool
            arguments["url"] = NOWHERE
    if case.operation.definition.raw["operationId"] == "stream_events":
        case.query = {**(case.query or {}), "follow": "false"}
    case.call_and_validate()


# The second run: the same generated requests without any credentials. Every operation that
# is not public must answer 401 (and never run); public ones must not.
anonymous = schemathesis.openapi.from_path(str(spec.SPEC_PATH))
anonymous.app = bound
anonymous.config.update(base_url="http://testserver")
anonymous.config.generation.update(modes=[GenerationMode.POSITIVE])
PUBLIC = {policy.operation_id for policy in spec.policies().values() if policy.role == "public"}


@anonymous.parametrize()
@settings(max_examples=5, deadline=None, suppress_health_check=list(HealthCheck))
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
