"""Database proxy, base model, portable field types, ids, clock and migrations.

SQLite is the default (a WAL file under the data folder); PostgreSQL is used when the
database URL says so. The same models, queries and numbered migrations serve both.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import peewee
from playhouse import migrations as pw_migrations
from playhouse.db_url import connect as url_connect
from playhouse.db_url import parse as url_parse

database = peewee.DatabaseProxy()
MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"

SQLITE_PRAGMAS = {
    "journal_mode": "wal",
    "busy_timeout": 10000,
    "foreign_keys": 1,
    "synchronous": "normal",
    "cache_size": -16000,
}


# --- clock -------------------------------------------------------------------------------

_clock: Callable[[], dt.datetime] | None = None


def utcnow() -> dt.datetime:
    """Naive UTC now (the database stores naive UTC); tests may install a fake clock."""
    if _clock is not None:
        return _clock()
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


def set_clock(clock: Callable[[], dt.datetime] | None) -> None:
    global _clock
    _clock = clock


def _to_millisecond(value: dt.datetime | str) -> dt.datetime:
    if isinstance(value, str):  # SQLite hands back text for some expressions
        value = dt.datetime.fromisoformat(value)
    return value.replace(tzinfo=None, microsecond=value.microsecond // 1000 * 1000)


def iso(value: dt.datetime | None) -> str | None:
    """RFC 3339 UTC with a ``Z``, millisecond precision."""
    if value is None:
        return None
    # isoformat pads the year to four digits (strftime's %Y writes year 870 as "870")
    return _to_millisecond(value).isoformat(timespec="milliseconds") + "Z"


def duration_ms(start: dt.datetime | None, end: dt.datetime | None) -> int | None:
    """Whole milliseconds from ``start`` to ``end`` exactly as their ``iso`` forms read (so a
    client subtracting the two timestamps gets the same number); None while either is
    unknown, never negative (a clock stepped back)."""
    if start is None or end is None:
        return None
    elapsed = _to_millisecond(end) - _to_millisecond(start)
    return max(0, elapsed // dt.timedelta(milliseconds=1))


# --- ids ---------------------------------------------------------------------------------

_CROCKFORD = "0123456789abcdefghjkmnpqrstvwxyz"
_id_lock = threading.Lock()
_last: tuple[int, int] = (0, 0)


def _encode(value: int, length: int) -> str:
    chars = []
    for _ in range(length):
        chars.append(_CROCKFORD[value & 31])
        value >>= 5
    return "".join(reversed(chars))


def new_id(prefix: str) -> str:
    """A prefixed, sortable id: ``<prefix>_`` + 10 chars of ms time + 16 chars of randomness.

    Monotonic within a process (like a monotonic ULID): an id made in the same millisecond
    as the previous one increments its random part, so creation order is sort order.
    """
    global _last
    with _id_lock:
        ms = max(int(time.time() * 1000), _last[0])
        rand = _last[1] + 1 if ms == _last[0] else int.from_bytes(os.urandom(10), "big") >> 1
        _last = (ms, rand)
    return f"{prefix}_{_encode(ms, 10)}{_encode(rand, 16)}"


# --- fields and models -------------------------------------------------------------------


class JSONField(peewee.TextField):
    """JSON stored as text: portable across SQLite and PostgreSQL."""

    def db_value(self, value: Any) -> str | None:
        if value is None:
            return None
        # allow_nan=False: every byte the hub stores (and so emits) is valid JSON
        return json.dumps(value, separators=(",", ":"), sort_keys=True, allow_nan=False)

    def python_value(self, value: Any) -> Any:
        if value is None or not isinstance(value, str):
            return value
        return json.loads(value)


class BaseModel(peewee.Model):
    class Meta:
        database = database
        legacy_table_names = False


class Versioned:
    """A model with a ``version`` column, raised by every write: its ETag is that version."""

    @property
    def etag(self) -> str:
        return f'"{self.version}"'


class Prepared:
    """A Peewee query compiled to SQL once per database engine, then run with new values.

    Building a query costs Peewee ~0.3 ms (an ``UPDATE … RETURNING`` of a wide row ~2 ms); hot
    paths (authenticating every request, reading one row by key, claiming a task) reuse the SQL
    instead. By default ``build`` must put each of its arguments, in order, as the query's only
    parameters (no LIMIT/OFFSET values); otherwise ``params`` gives, for the same arguments,
    the list Peewee binds (constants and LIMIT included, in Peewee's order). Either is checked
    against Peewee's own list at compile time, so a wrong one fails at once, never silently.
    """

    def __init__(
        self,
        model: type[peewee.Model],
        build: Callable[..., peewee.Query],
        params: Callable[..., list[Any]] | None = None,
    ) -> None:
        self.model = model
        self.build = build
        self.params = params
        self._sql: dict[type, str] = {}

    def statement(self, *values: Any) -> tuple[str, list[Any]]:
        """The SQL for this engine and the parameters to bind for ``values``."""
        params = list(values) if self.params is None else self.params(*values)
        engine = type(database.obj)
        sql = self._sql.get(engine)
        if sql is None:
            sql, built = self.build(*values).sql()
            if list(built) != params:
                raise ValueError(f"prepared query parameters {built!r} are not {params!r}")
            self._sql[engine] = sql
        return sql, params

    def first(self, *values: Any) -> peewee.Model | None:
        sql, params = self.statement(*values)
        return next(iter(self.model.raw(sql, *params)), None)

    def rows(self, *values: Any) -> list[peewee.Model]:
        """Every row the statement answers (a ``RETURNING`` one's too), as model objects."""
        sql, params = self.statement(*values)
        return list(self.model.raw(sql, *params))

    def scalar(self, *values: Any) -> Any:
        """The first column of the first row, or ``None``."""
        sql, params = self.statement(*values)
        row = database.execute_sql(sql, params).fetchone()
        return None if row is None else row[0]


# --- connection and migrations -----------------------------------------------------------


def owner_only(path: Path) -> None:
    """Make the SQLite file at ``path`` readable by its owner only: its folder is created
    0700, the file 0600 (SQLite gives its ``-wal`` and ``-shm`` files the database file's
    mode); an existing file (and its ``-wal``/``-shm``) that others could read is tightened."""
    if not path.parent.exists():
        path.parent.mkdir(parents=True, mode=0o700)
    os.close(os.open(path, os.O_RDWR | os.O_CREAT, 0o600))
    for file in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
        try:
            mode = file.stat().st_mode & 0o777
            if mode & 0o077:
                file.chmod(mode & 0o700)
        except FileNotFoundError:
            pass


class DatabaseUnavailable(peewee.OperationalError):
    """The database cannot be reached, or the connection to it was lost mid-work: nothing
    the request wrote is known to have committed, and trying again shortly may work (the HTTP
    layer answers 503 with ``Retry-After``)."""

    log_as_line = True  # an outage, not a bug: hub.core.logs writes it without a traceback


_READ = ("select", "show")  # run again on a fresh connection (a WITH may write: not one)
CONNECT_TIMEOUT_SECONDS = 5  # a server that accepts but never answers holds no thread longer


class ReconnectingPostgresqlDatabase(peewee.PostgresqlDatabase):
    """PostgreSQL that survives its server restarting (or a network blip).

    Each thread keeps its own connection; one found dead (psycopg says ``closed`` or
    ``broken``) is dropped and the next use connects afresh:

    - before a transaction begins, a dead connection is replaced and ``BEGIN`` is tried once
      more: nothing has been done yet;
    - a read outside a transaction that fails because the connection died runs once more on
      a fresh one;
    - anything else cut off by a lost connection (a write, or any statement inside a
      transaction, whose outcome is unknown) raises :class:`DatabaseUnavailable`, as does a
      connection that cannot be opened: the caller answers 503, never 500, and the server
      itself rolled back whatever the lost connection had not committed.
    """

    def _lost(self) -> bool:
        conn = self._state.conn
        return conn is not None and bool(conn.closed or getattr(conn, "broken", False))

    def _drop(self) -> None:
        """Forget this thread's dead connection (outside a transaction only)."""
        with contextlib.suppress(Exception):
            self._state.conn.close()
        self._state.reset()

    def connect(self, reuse_if_open=False):
        try:
            return super().connect(reuse_if_open)
        except peewee.OperationalError as exc:
            if not self._state.closed:
                raise  # "Connection already opened": a bug, not the server
            raise DatabaseUnavailable(f"cannot connect to PostgreSQL: {exc}") from exc

    def _ensure_connected(self) -> None:
        # Connect here, not inside Peewee's own exception wrapper (which would turn
        # DatabaseUnavailable back into a plain OperationalError).
        if self._state.closed:
            self.connect()

    def begin(self, *args, **kwargs):
        if self._lost():
            self._drop()
        self._ensure_connected()
        try:
            return super().begin(*args, **kwargs)
        except (peewee.OperationalError, peewee.InterfaceError) as exc:
            if isinstance(exc, DatabaseUnavailable) or not self._lost():
                raise
            self._drop()
        self._ensure_connected()
        return super().begin(*args, **kwargs)

    def execute_sql(self, sql, params=None):
        in_transaction = self.in_transaction()
        if self._lost():
            if in_transaction:
                raise DatabaseUnavailable("the connection to PostgreSQL was lost")
            self._drop()
        self._ensure_connected()
        try:
            return super().execute_sql(sql, params)
        except (peewee.OperationalError, peewee.InterfaceError) as exc:
            if isinstance(exc, DatabaseUnavailable) or not self._lost():
                raise
            if in_transaction or not sql.lstrip().lower().startswith(_READ):
                raise DatabaseUnavailable(f"the connection to PostgreSQL was lost: {exc}") from exc
            self._drop()
        self._ensure_connected()
        return super().execute_sql(sql, params)

    def rollback(self):
        if self._lost():
            return  # the server rolled back what the lost connection had not committed
        return super().rollback()

    def commit(self):
        if self._lost():
            raise DatabaseUnavailable("the connection to PostgreSQL was lost before commit")
        try:
            return super().commit()
        except (peewee.OperationalError, peewee.InterfaceError) as exc:
            if self._lost():
                raise DatabaseUnavailable(f"the commit's outcome is unknown: {exc}") from exc
            raise


def open_database(url: str) -> peewee.Database:
    """Connect the proxy to ``url`` (``sqlite:///path`` or ``postgresql://…``)."""
    if url.startswith("sqlite"):
        path = url.split("sqlite:///", 1)[-1]
        if path and path != ":memory:":
            owner_only(Path(path))
        db = peewee.SqliteDatabase(path, pragmas=SQLITE_PRAGMAS, check_same_thread=False)
    else:
        params = url_parse(url)
        if not params.get("database"):
            url_connect(url)  # raises the library's own clear error for a URL without a name
        # a server that accepts the connection but never answers must not hold every thread
        params.setdefault("connect_timeout", CONNECT_TIMEOUT_SECONDS)
        db = ReconnectingPostgresqlDatabase(**params)
    database.initialize(db)
    return db


def is_postgres() -> bool:
    return isinstance(database.obj, peewee.PostgresqlDatabase)


class _Hooks(threading.local):
    def __init__(self) -> None:
        self.before: list[Callable[[], None]] = []
        self.after: list[Callable[[], None]] = []
        # Our own nesting count: Peewee's transaction_depth() does not count savepoints, so
        # it cannot tell the outermost write_transaction from a nested one.
        self.depth = 0


_hooks = _Hooks()
# SQLite: this process's writers queue here for the write lock. SQLite's own busy handler
# retries with sleeps of up to 100 ms, so under contention some writers wait far longer than
# others; a lock in the process hands the database over as soon as it is free. (Other
# processes on the same file still meet the busy handler.)
_sqlite_writer = threading.Lock()
_finalizers: list[Callable[[], None]] = []
_last_finalizers: set[Callable[[], None]] = set()


def add_finalizer(finalizer: Callable[[], None], *, last: bool = False) -> None:
    """Run ``finalizer`` in every outermost write transaction, after its ``before_commit``
    hooks (the event log writes its batch there). ``last``: after every other finalizer (the
    audit entry, whose lock on PostgreSQL is then held for the commit only)."""
    if finalizer in _finalizers:
        return
    if last:
        _finalizers.append(finalizer)
        _last_finalizers.add(finalizer)
    else:
        position = next(
            (i for i, f in enumerate(_finalizers) if f in _last_finalizers), len(_finalizers)
        )
        _finalizers.insert(position, finalizer)


def before_commit(hook: Callable[[], None]) -> None:
    """Run ``hook`` inside the current write transaction, just before it commits (never when
    it rolls back). Hooks registered in a savepoint that rolls back are dropped with it."""
    _hooks.before.append(hook)


def in_write_transaction() -> bool:
    """Whether this thread is inside a ``write_transaction`` (user programs must not run
    there: they would hold the write lock for as long as they run)."""
    return _hooks.depth > 0


def after_commit(hook: Callable[[], None]) -> None:
    """Run ``hook`` once the current write transaction has committed."""
    _hooks.after.append(hook)


def claim_query(source: peewee.ModelSelect, **changes) -> peewee.ModelUpdate:
    """The claim of the first row of ``source`` (in its order): ``changes`` applied to it,
    the row returned as updated. Claimers never take the same row: on PostgreSQL a row
    another transaction holds is skipped (``FOR UPDATE SKIP LOCKED``); on SQLite the write
    lock lets one claimer in at a time. Run it inside a write transaction (``claim_first``,
    or compiled once with ``Prepared`` where the claim is hot)."""
    model = source.model
    key = model._meta.primary_key
    best = source.select(key).limit(1)
    if is_postgres():
        best = best.for_update(skip_locked=True)
    return model.update(**changes).where(key == best).returning(model)


def claim_first(source: peewee.ModelSelect, **changes) -> peewee.Model | None:
    """Inside the caller's write transaction: ``claim_query``'s row, or ``None``."""
    claimed = list(claim_query(source, **changes).execute())
    return claimed[0] if claimed else None


class write_transaction:
    """A transaction that takes the write lock up front on SQLite (no 'database is locked'
    surprises when it reads first); a plain transaction on PostgreSQL. Nested, it is a
    savepoint. The outermost one runs the ``before_commit`` hooks (the event log's writes)
    inside the transaction and the ``after_commit`` hooks after it."""

    __slots__ = ("_atomic", "_marks", "_queued")

    def __enter__(self):
        self._atomic = database.atomic() if is_postgres() else database.atomic("IMMEDIATE")
        self._marks = (len(_hooks.before), len(_hooks.after))
        self._queued = _hooks.depth == 0 and not is_postgres()
        if self._queued:
            _sqlite_writer.acquire()
        try:
            entered = self._atomic.__enter__()
        except BaseException:
            if self._queued:
                _sqlite_writer.release()
            raise
        _hooks.depth += 1
        return entered

    def __exit__(self, exc_type, exc, tb):
        try:
            return self._exit(exc_type, exc, tb)
        finally:
            self._release()

    def _release(self) -> None:
        if self._queued:
            self._queued = False
            _sqlite_writer.release()

    def _exit(self, exc_type, exc, tb):
        outermost = _hooks.depth == 1
        _hooks.depth -= 1
        if exc_type is None and outermost:
            try:
                while _hooks.before:  # a hook may register more (an event's consequences)
                    _hooks.before.pop(0)()
                for finalizer in _finalizers:
                    finalizer()
            except BaseException as failure:
                del _hooks.after[self._marks[1] :]
                self._atomic.__exit__(type(failure), failure, failure.__traceback__)
                raise
        if exc_type is not None:
            del _hooks.before[self._marks[0] :]
            del _hooks.after[self._marks[1] :]
        try:
            result = self._atomic.__exit__(exc_type, exc, tb)
        except BaseException:
            if outermost:
                _hooks.before.clear()
                _hooks.after.clear()
            raise
        self._release()  # before the after-commit hooks: they may write again
        if exc_type is None and outermost:
            after, _hooks.after[:] = list(_hooks.after), []
            for hook in after:
                hook()
        return result


def migrate(db: peewee.Database | None = None) -> list[str]:
    """Apply every pending numbered migration; returns the names applied.

    On PostgreSQL an advisory lock makes concurrent starts of several hubs safe.
    """
    db = db or database.obj
    runner = pw_migrations.Runner(db, str(MIGRATIONS_DIR), table_name="schema_migration")
    if isinstance(db, peewee.PostgresqlDatabase):
        db.execute_sql("SELECT pg_advisory_lock(7231001)")
        try:
            return runner.up()
        finally:
            db.execute_sql("SELECT pg_advisory_unlock(7231001)")
    return runner.up()


def migration_status(db: peewee.Database | None = None) -> list[tuple[str, bool]]:
    db = db or database.obj
    runner = pw_migrations.Runner(db, str(MIGRATIONS_DIR), table_name="schema_migration")
    return [(m.name, m.applied is not None) for m in runner.status()]
