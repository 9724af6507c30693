"""Schemathesis' stateful phase: sequences of calls that follow the contract's ``links`` (a
create's answer feeding its reads, updates sent with its ``ETag`` as ``If-Match``, deletes)
and the links schemathesis infers beside them, with every check after each call.

Each scenario starts on a fresh SQLite hub (a copy of the migrated template, in this process):
Hypothesis replays a scenario's choices while it explores, and on a hub that kept the rows of
earlier scenarios the same choices would meet other answers (201 became 409) and Hypothesis
would stop with ``FlakyStrategyDefinition``. A hub per scenario makes a scenario's answers a
function of its calls. The adjustments and restorations of ``tests/test_contract.py`` (its
docstring gives each reason) apply to every call. PostgreSQL meets every operation in that
module's run; here each step is one call against SQLite."""

from __future__ import annotations

import shutil

import pytest
from hypothesis import HealthCheck, Phase, settings
from starlette.testclient import TestClient

from db import base as db_base
from hub.app import create_app
from tests.conftest import hub_settings
from tests.servers import TOKEN
from tests.test_contract import (
    ADMIN,
    _adjust,
    _check_openai_refusal,
    _excluded,
    _restore_config,
    bound,
    schema,
)

pytestmark = pytest.mark.slow


class Hubs:
    """A fresh hub for each scenario, on a copy of the migrated SQLite template."""

    def __init__(self, template, folder) -> None:
        self.template, self.folder, self.count = template, folder, 0
        self.current: TestClient | None = None

    def fresh(self) -> None:
        self.close()
        self.count += 1
        path = self.folder / f"hub-{self.count}.db"
        shutil.copyfile(self.template, path)
        data = self.folder / f"data-{self.count}"
        settings = hub_settings(f"sqlite:///{path}", data, admin_token=TOKEN)
        bound.target = create_app(settings)
        self.current = TestClient(bound.target, base_url="http://testserver", headers=ADMIN)

    def close(self) -> None:
        bound.target = self.current = None
        if db_base.database.obj is not None and not db_base.database.is_closed():
            db_base.database.close()


class StatefulRun(schema.as_state_machine()):
    hubs: Hubs | None = None
    steps = 0  # calls made, over every scenario: the test fails if the phase ran none

    def setup(self) -> None:
        StatefulRun.hubs.fresh()

    def teardown(self) -> None:
        StatefulRun.hubs.close()

    def before_call(self, case) -> None:
        _adjust(case)

    def after_call(self, response, case) -> None:
        super().after_call(response, case)
        StatefulRun.steps += 1
        _restore_config(case, StatefulRun.hubs.current, None)

    def validate_response(self, response, case, additional_checks=None, **kwargs) -> None:
        case.validate_response(
            response,
            additional_checks=additional_checks,
            excluded_checks=_excluded(case),
            transport_kwargs=kwargs or None,
            recorder=self.recorder,
        )
        _check_openai_refusal(case, response)


@pytest.fixture
def hubs(sqlite_template, tmp_path):
    StatefulRun.hubs, StatefulRun.steps = Hubs(sqlite_template, tmp_path), 0
    yield StatefulRun.hubs
    StatefulRun.hubs.close()
    assert StatefulRun.steps > 0, "the stateful phase made no call"
    StatefulRun.hubs = None


@pytest.mark.usefixtures("hubs")
class TestStateful(StatefulRun.TestCase):
    settings = settings(
        max_examples=40,
        stateful_step_count=8,
        phases=[Phase.generate],
        deadline=None,
        suppress_health_check=list(HealthCheck),
        database=None,
    )
