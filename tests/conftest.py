"""Shared fixtures: settings on a temp SQLite file or a throwaway PostgreSQL database, the app,
a client, API keys per role, and a fake clock.

Tests that take ``settings`` (directly or through ``app``/``client``) run once per backend.
"""

from __future__ import annotations

import datetime as dt
import os
import uuid
import warnings

import psycopg
import pytest

with warnings.catch_warnings():  # starlette warns that it prefers httpx2 to httpx
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

from db import base as db_base
from hub.app import create_app
from hub.services import keys
from hub.settings import Settings
from tests.pgserver import PgServer, find_pg_bindir

BACKENDS = ("sqlite", "postgresql")
PG_TEMPLATE = "aether_template"


@pytest.fixture(scope="session")
def pg_server():
    """One throwaway PostgreSQL server for the whole run; each test gets its own database."""
    if find_pg_bindir() is None:
        pytest.fail(
            "PostgreSQL binaries not found: run tools/ensure_postgres.sh (make test does) "
            "or set AETHER_PG_BINDIR"
        )
    server = PgServer()
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def pg_admin(pg_server):
    """An autocommit connection that creates and drops the per-test databases."""
    connection = psycopg.connect(pg_server.url_for("postgres"), autocommit=True)
    # A migrated template makes each test's database a cheap file copy.
    connection.execute(f"CREATE DATABASE {PG_TEMPLATE}")
    db_base.migrate(db_base.open_database(pg_server.url_for(PG_TEMPLATE)))
    _close_database()
    yield connection
    connection.close()


@pytest.fixture(params=BACKENDS)
def backend(request) -> str:
    return request.param


@pytest.fixture
def database_url(backend, tmp_path, request):
    if backend == "sqlite":
        yield f"sqlite:///{tmp_path / 'hub.db'}"
        return
    server = request.getfixturevalue("pg_server")
    admin = request.getfixturevalue("pg_admin")
    name = "t_" + uuid.uuid4().hex[:16]
    admin.execute(f"CREATE DATABASE {name} TEMPLATE {PG_TEMPLATE}")
    yield server.url_for(name)
    _close_database()
    admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def _close_database() -> None:
    if db_base.database.obj is not None and not db_base.database.is_closed():
        db_base.database.close()


@pytest.fixture
def settings(database_url, tmp_path) -> Settings:
    return Settings(
        data_dir=str(tmp_path / "data"),
        database_url=database_url,
        rate_limit_per_minute=0,
        response_validation=True,
        heartbeat_seconds=3600,
        log_level="warning",
    )


@pytest.fixture
def app(settings):
    hub = create_app(settings)
    yield hub
    _close_database()


@pytest.fixture
def keyring(app) -> dict[str, str]:
    """One API key secret per role."""
    return {role: keys.create(f"test {role}", role)[1] for role in ("viewer", "operator", "admin")}


def auth(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


@pytest.fixture
def client(app, keyring):
    """A client that authenticates as admin by default."""
    with TestClient(app, headers=auth(keyring["admin"])) as test_client:
        yield test_client


@pytest.fixture
def anon(app):
    with TestClient(app) as test_client:
        yield test_client


class FakeClock:
    def __init__(self) -> None:
        self.now = dt.datetime(2026, 1, 1, 12, 0, 0)

    def __call__(self) -> dt.datetime:
        return self.now

    def advance(self, **delta) -> None:
        self.now += dt.timedelta(**delta)


@pytest.fixture
def clock():
    fake = FakeClock()
    db_base.set_clock(fake)
    yield fake
    db_base.set_clock(None)


def pytest_collection_modifyitems(config, items):
    """In CI the PostgreSQL tests must run: fail early when the binaries are missing."""
    if os.environ.get("CI") and find_pg_bindir() is None:
        raise pytest.UsageError("CI needs PostgreSQL binaries (tools/ensure_postgres.sh)")
