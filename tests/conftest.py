"""Shared fixtures: settings on a temp SQLite file or a throwaway PostgreSQL database, the app,
a client, API keys per role, and a fake clock.

Tests that take ``settings`` (directly or through ``app``/``client``) run once per backend.
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
import tempfile
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
from tests.assertions import assert_headers_declared
from tools.pgserver import PgServer, find_pg_bindir, ram_tmpdir, remove_stale_clusters

# ``make test`` runs every backend; ``make test-fast`` sets AETHER_TEST_BACKENDS=sqlite.
BACKENDS = tuple(
    name.strip()
    for name in os.environ.get("AETHER_TEST_BACKENDS", "sqlite,postgresql").split(",")
    if name.strip()
)
PG_TEMPLATE = "aether_template"
RAM_DIR = ram_tmpdir()


def pytest_configure(config):
    """In CI the PostgreSQL tests must run: fail at once when the binaries are missing (here,
    so that pytest-xdist's controller, which collects nothing, fails too).

    The run's temp files (tmp_path, SQLite databases) go to RAM when the machine has a tmpfs,
    unless a temp dir was chosen (TMPDIR or --basetemp): on a virtual disk every SQLite commit
    and file operation is several times slower. Under pytest-xdist the controller picks the
    base temp dir and hands each worker a folder of it.
    """
    if os.environ.get("CI") and find_pg_bindir() is None:
        raise pytest.UsageError("CI needs PostgreSQL binaries (tools/ensure_postgres.sh)")
    if RAM_DIR and not os.environ.get("TMPDIR") and not config.option.basetemp:
        tempfile.tempdir = RAM_DIR


@pytest.fixture(scope="session")
def pg_server():
    """One throwaway PostgreSQL server for the whole run; each test gets its own database."""
    if find_pg_bindir() is None:
        pytest.fail(
            "PostgreSQL binaries not found: run tools/ensure_postgres.sh (make test does) "
            "or set AETHER_PG_BINDIR"
        )
    if RAM_DIR:
        remove_stale_clusters(RAM_DIR)
    server = PgServer(base_dir=RAM_DIR)  # one per pytest-xdist worker: it is per process
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
    _retire_database(connection, None)
    connection.close()


@pytest.fixture(params=BACKENDS)
def backend(request) -> str:
    return request.param


@pytest.fixture
def database_url(backend, tmp_path, request):
    if backend == "sqlite":
        yield f"sqlite:///{tmp_path / 'hub.db'}"
        return
    worker = request.getfixturevalue("pg_worker_database")
    yield worker.url
    _close_database()
    worker.empty()


class WorkerDatabase:
    """One PostgreSQL database per pytest worker, migrated, emptied after every test.

    Creating a database per test (a copy of the template) and dropping it after cost two
    checkpoints of the whole cluster and ~20 ms each; emptying one costs a few deletes. After
    a test its connections are ended (threads of its app may have left some open), then every
    table but the migrations' own is emptied and the sequences restarted, and the rows the
    migrations seed (the seeded tool groups) are put back, so each test starts as on a fresh
    copy of the template."""

    def __init__(self, server, admin) -> None:
        self.name = "w_" + uuid.uuid4().hex[:16]
        admin.execute(f"CREATE DATABASE {self.name} TEMPLATE {PG_TEMPLATE}{_copy_strategy(admin)}")
        self.url = server.url_for(self.name)
        self.connection = psycopg.connect(self.url, autocommit=True)
        tables = [
            row[0]
            for row in self.connection.execute(
                "SELECT tablename FROM pg_tables WHERE schemaname = 'public'"
                " AND tablename <> 'schema_migration'"
            )
        ]
        sequences = [
            row[0]
            for row in self.connection.execute(
                "SELECT sequencename FROM pg_sequences WHERE schemaname = 'public'"
            )
        ]
        self._seeded = []  # (insert statement, rows) of the tables the migrations fill
        for table in tables:
            cursor = self.connection.execute(f'SELECT * FROM "{table}"')
            rows = cursor.fetchall()
            if rows:
                columns = ", ".join(f'"{column.name}"' for column in cursor.description)
                marks = ", ".join(["%s"] * len(cursor.description))
                self._seeded.append((f'INSERT INTO "{table}" ({columns}) VALUES ({marks})', rows))
        # DELETE, not TRUNCATE: a TRUNCATE of the 30-odd tables replaces every table's files
        # and cost ~40 ms per test; deleting the few rows a test wrote costs ~5 ms. Foreign
        # keys are not checked while emptying (the replica role); sequences start again at 1.
        self._empty = " ".join(
            ["SET session_replication_role = replica;"]
            + [f'DELETE FROM "{table}";' for table in tables]
            + [f'ALTER SEQUENCE "{sequence}" RESTART;' for sequence in sequences]
            + ["SET session_replication_role = DEFAULT;"]
        )

    def empty(self) -> None:
        self.connection.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE datname = %s AND pid <> pg_backend_pid()",
            (self.name,),
        )
        self.connection.execute(self._empty)
        with self.connection.cursor() as cursor:
            for insert, rows in self._seeded:
                cursor.executemany(insert, rows)


@pytest.fixture(scope="session")
def pg_worker_database(pg_server, pg_admin):
    worker = WorkerDatabase(pg_server, pg_admin)
    yield worker
    worker.connection.close()
    _retire_database(pg_admin, worker.name)


def _copy_strategy(admin) -> str:
    # FILE_COPY (PostgreSQL < 15 knows no other way) copies the template's files; the default
    # since 15, WAL_LOG, writes the whole template through the WAL, several times slower.
    return " STRATEGY = FILE_COPY" if admin.info.server_version >= 150000 else ""


_retired: list[str] = []


def _retire_database(admin, name: str | None) -> None:
    """Drop the databases retired before, then retire ``name``.

    Threads of a test's app can leave connections open; DROP DATABASE ... WITH (FORCE) ends
    them but waits for them in steps of 100 ms. So a retired database's connections are told
    to end at once, and the database is dropped after the next test, when they are gone.
    """
    while _retired:
        admin.execute(f"DROP DATABASE IF EXISTS {_retired.pop()} WITH (FORCE)")
    if name is not None:
        sql = "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s"
        admin.execute(sql, (name,))
        _retired.append(name)


def _close_database() -> None:
    if db_base.database.obj is not None and not db_base.database.is_closed():
        db_base.database.close()


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory):
    """A migrated SQLite database file, copied for each test as PostgreSQL's template is."""
    path = tmp_path_factory.mktemp("sqlite-template") / "hub.db"
    db = db_base.open_database(f"sqlite:///{path}")
    db_base.migrate(db)
    db.execute_sql("PRAGMA wal_checkpoint(TRUNCATE)")
    db.close()
    return path


@pytest.fixture
def settings(database_url, tmp_path, request) -> Settings:
    """Settings on a fresh, empty, migrated database (``database_url`` itself is a path where
    no SQLite database exists yet)."""
    if database_url.startswith("sqlite:///"):
        shutil.copyfile(
            request.getfixturevalue("sqlite_template"), database_url.removeprefix("sqlite:///")
        )
    return hub_settings(database_url, tmp_path / "data", log_level="warning")


def hub_settings(database_url: str, data_dir, **overrides) -> Settings:
    """What every test hub runs with: no rate limits, responses validated against the
    contract, no heartbeat during a test, quiet logs."""
    return Settings(
        data_dir=str(data_dir),
        database_url=database_url,
        rate_limit_per_minute=0,
        unauthenticated_rate_limit_per_minute=0,
        response_validation=True,
        heartbeat_seconds=3600,
        log_level="critical",
    ).replace(**overrides)


@pytest.fixture(scope="module", params=BACKENDS)
def module_settings(request, tmp_path_factory) -> Settings:
    """Settings on a fresh database shared by every test of one module (per backend): for
    modules whose tests only read, or write nothing another test of theirs could see."""
    name = "m_" + uuid.uuid4().hex[:16]
    if request.param == "sqlite":
        path = tmp_path_factory.mktemp("module") / "hub.db"
        shutil.copyfile(request.getfixturevalue("sqlite_template"), path)
        url = f"sqlite:///{path}"
    else:
        admin = request.getfixturevalue("pg_admin")
        admin.execute(f"CREATE DATABASE {name} TEMPLATE {PG_TEMPLATE}{_copy_strategy(admin)}")
        url = request.getfixturevalue("pg_server").url_for(name)
    yield hub_settings(url, tmp_path_factory.mktemp("module-data"))
    _close_database()
    if request.param == "postgresql":
        _retire_database(request.getfixturevalue("pg_admin"), name)


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
        test_client.event_hooks["response"].append(assert_headers_declared)
        yield test_client


@pytest.fixture
def anon(app):
    with TestClient(app) as test_client:
        test_client.event_hooks["response"].append(assert_headers_declared)
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
