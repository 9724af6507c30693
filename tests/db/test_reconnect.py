"""A lost PostgreSQL connection is replaced (issue 13, break 3): a read outside a transaction
runs again on a fresh connection; a write or a transaction cut off by the loss raises
``DatabaseUnavailable`` (the HTTP layer's 503) and the next one works. The connection is
ended from the server side, as a restart or a network blip would end it."""

from __future__ import annotations

import peewee
import pytest

from db import base as db_base
from db.api_keys import ApiKey
from db.base import DatabaseUnavailable, write_transaction
from tests.assertions import assert_problem
from tests.conftest import BACKENDS


@pytest.fixture(params=[name for name in BACKENDS if name == "postgresql"])
def backend(request) -> str:
    return request.param


def end_my_connection(pg_admin) -> None:
    pid = db_base.database.execute_sql("SELECT pg_backend_pid()").fetchone()[0]
    pg_admin.execute("SELECT pg_terminate_backend(%s, 5000)", (pid,))  # waits for its end


def test_a_read_outside_a_transaction_runs_again_on_a_fresh_connection(app, pg_admin):
    end_my_connection(pg_admin)
    assert db_base.database.execute_sql("SELECT 41 + 1").fetchone() == (42,)


def test_a_write_cut_off_is_unavailable_and_the_next_transaction_works(app, pg_admin):
    end_my_connection(pg_admin)
    with pytest.raises(DatabaseUnavailable):
        db_base.database.execute_sql("DELETE FROM api_key WHERE id = 'none'")
    with pytest.raises(DatabaseUnavailable), write_transaction():
        ApiKey.select().count()
        end_my_connection(pg_admin)  # mid-transaction
        ApiKey.select().count()
    with write_transaction():  # a fresh connection for the next one
        assert ApiKey.select().count() >= 0


def test_a_transaction_begun_on_a_dead_connection_starts_on_a_fresh_one(app, pg_admin):
    db_base.database.execute_sql("SELECT 1")
    end_my_connection(pg_admin)
    with write_transaction():
        assert db_base.database.execute_sql("SELECT 1").fetchone() == (1,)


def test_an_unreachable_server_is_unavailable_not_an_error(app):
    unreachable = db_base.ReconnectingPostgresqlDatabase(
        "nowhere", host="127.0.0.1", port=9, connect_timeout=2
    )
    with pytest.raises(DatabaseUnavailable) as raised:
        unreachable.connect()
    assert isinstance(raised.value, peewee.OperationalError)


def test_a_request_on_a_lost_connection_answers_503_or_works(client, pg_admin, monkeypatch):
    def unavailable(*args, **kwargs):
        raise DatabaseUnavailable("the connection to PostgreSQL was lost")

    monkeypatch.setattr(db_base.ReconnectingPostgresqlDatabase, "begin", unavailable)
    response = client.post("/api/v1/agents", json={"id": "a", "name": "A", "model": "builtin/echo"})
    problem = assert_problem(response, 503, "database_unavailable")
    assert response.headers["retry-after"] == "1"
    assert "PostgreSQL" not in problem["detail"]  # no internals in the answer


def test_an_outage_logs_one_line_not_a_traceback():
    import json
    import logging
    import sys

    from hub.core.logs import JSONFormatter

    try:
        raise DatabaseUnavailable("cannot connect to PostgreSQL: refused\n\tmore detail")
    except DatabaseUnavailable:
        record = logging.LogRecord("aether.worker", 30, "", 0, "claim failed", (), sys.exc_info())
    line = json.loads(JSONFormatter().format(record))
    assert line["error"] == "cannot connect to PostgreSQL: refused"
    assert "exc" not in line
