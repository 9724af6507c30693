"""The references the hub is measured against, side by side in the same run.

Apps (each imported by uvicorn in its own process, ``bench.references:<factory>``, with the
hub's flags; see ``bench.harness``):

* ``bare_app``: Starlette + Peewee, the hub's ``/health/live`` and ``GET
  /api/v1/agents/{id}``, the same row of the same SQLite file, no auth, no middleware;
* ``thin_app``: the thinnest version of the same two routes: a plain Peewee ``get_or_none``
  (no prepared statement, no hub helper) and ``orjson`` bytes in a plain ``Response``;
* ``fake_upstream_app``: a fake OpenAI-compatible upstream streaming tokens on a fixed
  schedule, each stamped with its emission time;
* ``bare_events_app`` / ``bare_fanout_app``: ``POST /events`` as ONE ``Event.insert`` in one
  write transaction, and (fan-out) the frame put on every SSE stream's in-memory queue.

In-process references (run in the bench's own process):

* ``raw_claimer``: the task queue's claim as one hand-written ``UPDATE … RETURNING``;
* ``RawDatabase`` + ``capture_search``: the very statements memory keyword search issues,
  recorded from a real call and replayed on a raw driver connection.

Imports of Starlette and the project stay inside the functions: importing this module costs
nothing, and a reference process imports only what it serves.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import fnmatch
import json
import os
import sqlite3
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from bench.harness import BenchError

BARE_APP = "bench.references:bare_app"
THIN_APP = "bench.references:thin_app"
FAKE_UPSTREAM_APP = "bench.references:fake_upstream_app"
BARE_EVENTS_APP = "bench.references:bare_events_app"
BARE_FANOUT_APP = "bench.references:bare_fanout_app"
KEEPALIVE_S = 15.0  # the hub's SSE keep-alive comment interval, copied by the bare fan-out


def _database_url() -> str:
    return os.environ.get("AETHER_DATABASE_URL") or (
        f"sqlite:///{Path(os.environ['AETHER_DATA_DIR']).resolve() / 'aether.db'}"
    )


# --- requests: the bare app -----------------------------------------------------------------


def bare_app() -> Any:
    """The reference: Starlette + Peewee, same two routes, same row, no auth, no middleware.

    ``/health/live`` is ``async`` (no I/O); the agent read is a plain function, which Starlette
    runs in its thread pool, as Peewee's blocking calls must be (the hub's handlers run there
    too). It opens the database with ``db.base.open_database`` and reads with
    ``db.agents.get``, so the query is the hub's; it ignores the Authorization header.
    """
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    from db import agents
    from db.base import open_database

    open_database(_database_url())

    async def live(_request: Request) -> JSONResponse:
        return JSONResponse({"status": "ok"})

    def get_agent(request: Request) -> JSONResponse:
        agent = agents.get(request.path_params["agent_id"])
        if agent is None:
            return JSONResponse({"detail": "not found"}, status_code=404)
        return JSONResponse(agent.to_api(), headers={"ETag": agent.etag})

    return Starlette(
        routes=[
            Route("/health/live", live, methods=["GET"]),
            Route("/api/v1/agents/{agent_id}", get_agent, methods=["GET"]),
        ]
    )


def thin_app() -> Any:
    """The thinnest reference: Starlette, a plain ``Agent.get_or_none`` on the same table, the
    row's API dict (the same JSON as the hub's, so the bodies compare) encoded with ``orjson``
    into a plain ``Response``. Like ``bare_app``: no auth, the read in the thread pool."""
    import orjson
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.routing import Route

    from db.agents import Agent
    from db.base import open_database

    open_database(_database_url())
    live_body = orjson.dumps({"status": "ok"})

    async def live(_request: Request) -> Response:
        return Response(live_body, media_type="application/json")

    def get_agent(request: Request) -> Response:
        agent = Agent.get_or_none(Agent.id == request.path_params["agent_id"])
        if agent is None:
            return Response(b'{"detail":"not found"}', 404, media_type="application/json")
        return Response(
            orjson.dumps(agent.to_api()),
            media_type="application/json",
            headers={"ETag": agent.etag},
        )

    return Starlette(
        routes=[
            Route("/health/live", live, methods=["GET"]),
            Route("/api/v1/agents/{agent_id}", get_agent, methods=["GET"]),
        ]
    )


# --- streaming: the fake upstream -----------------------------------------------------------


def fake_upstream_app() -> Any:
    """A fake OpenAI-compatible upstream.

    ``POST /v1/chat/completions`` with ``stream: true`` answers a role chunk, then
    ``BENCH_FAKE_TOKENS`` content chunks on a fixed schedule (token ``i`` at
    ``start + i * BENCH_FAKE_INTERVAL_MS``; the first at once), a finish chunk, a usage chunk
    and ``data: [DONE]``. The schedule is absolute, so a late wake-up does not delay the
    tokens after it. Each token's text carries its emission time (CLOCK_MONOTONIC, which every
    process on the machine shares): ``t<i>@<ns> ``. ``GET /v1/models`` lists the one model
    ``m``.
    """
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse, Response, StreamingResponse
    from starlette.routing import Route

    tokens = int(os.environ.get("BENCH_FAKE_TOKENS", "50"))
    interval = float(os.environ.get("BENCH_FAKE_INTERVAL_MS", "20")) / 1000

    def data(payload: dict[str, Any]) -> bytes:
        return b"data: " + json.dumps(payload, separators=(",", ":")).encode() + b"\n\n"

    def chunk(delta: dict[str, Any] | None, finish: str | None = None, **extra: Any) -> bytes:
        choices = [] if delta is None else [{"index": 0, "delta": delta, "finish_reason": finish}]
        return data(
            {
                "id": "chatcmpl-fake",
                "object": "chat.completion.chunk",
                "created": 0,
                "model": "m",
                "choices": choices,
                **extra,
            }
        )

    async def live(_request: Request) -> JSONResponse:
        return JSONResponse({"status": "ok"})

    async def models(_request: Request) -> JSONResponse:
        return JSONResponse({"object": "list", "data": [{"id": "m", "object": "model"}]})

    async def completions(request: Request) -> Response:
        body = await request.json()
        usage = {"prompt_tokens": 10, "completion_tokens": tokens, "total_tokens": 10 + tokens}
        if not body.get("stream"):
            message = {"role": "assistant", "content": "".join(f"t{i} " for i in range(tokens))}
            choice = {"index": 0, "message": message, "finish_reason": "stop"}
            return JSONResponse(
                {
                    "id": "chatcmpl-fake",
                    "object": "chat.completion",
                    "choices": [choice],
                    "usage": usage,
                }
            )

        async def parts() -> AsyncIterator[bytes]:
            start = time.monotonic()  # not loop.time(): uvloop's is cached per iteration
            yield chunk({"role": "assistant", "content": ""})
            for i in range(tokens):
                delay = start + i * interval - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                # The emission time rides in the text, which the hub relays as is: the client
                # reads the delivery latency of each token from it.
                yield chunk({"content": f"t{i}@{time.monotonic_ns()} "})
            yield chunk({}, "stop")
            yield chunk(None, usage=usage)
            yield b"data: [DONE]\n\n"

        return StreamingResponse(parts(), media_type="text/event-stream")

    return Starlette(
        routes=[
            Route("/health/live", live, methods=["GET"]),
            Route("/v1/models", models, methods=["GET"]),
            Route("/v1/chat/completions", completions, methods=["POST"]),
        ]
    )


# --- events: the bare ingest and fan-out ----------------------------------------------------


def _bare_events(fanout: bool) -> Any:
    """Starlette + Peewee: ``POST /events`` inserts one row in one write transaction and
    answers it; with ``fanout``, also ``GET /events/stream`` fed from in-memory queues."""
    from starlette.applications import Starlette
    from starlette.concurrency import run_in_threadpool
    from starlette.requests import Request
    from starlette.responses import JSONResponse, Response, StreamingResponse
    from starlette.routing import Route

    from db.base import iso, open_database, utcnow, write_transaction
    from db.events import Event

    open_database(_database_url())
    streams: set[tuple[tuple[str, ...], asyncio.Queue[bytes]]] = set()

    def insert(body: dict[str, Any]) -> dict[str, Any]:
        row = {
            "type": body["type"],
            "source": "api",
            "subject": None,
            "trace_id": uuid.uuid4().hex,
            "payload": body.get("payload") or {},
            "raw": None,
            "time": utcnow(),
        }
        with write_transaction():
            event_id = Event.insert(**row).execute()
        return {"id": event_id, **row, "time": iso(row["time"])}

    async def live(_request: Request) -> JSONResponse:
        return JSONResponse({"status": "ok"})

    async def post_event(request: Request) -> JSONResponse:
        event = await run_in_threadpool(insert, json.loads(await request.body()))
        if streams:
            data = json.dumps(event, separators=(",", ":"))
            frame = f"id: {event['id']}\nevent: {event['type']}\ndata: {data}\n\n".encode()
            for globs, queue in list(streams):
                if not globs or any(fnmatch.fnmatchcase(event["type"], g) for g in globs):
                    queue.put_nowait(frame)
        return JSONResponse(event, status_code=201)

    async def stream(request: Request) -> Response:
        text = request.query_params.get("types") or ""
        follower = (tuple(g.strip() for g in text.split(",") if g.strip()), asyncio.Queue())
        streams.add(follower)  # at the call, like the hub: no event missed once it answers

        async def body() -> AsyncIterator[bytes]:
            try:
                while True:
                    try:
                        yield await asyncio.wait_for(follower[1].get(), KEEPALIVE_S)
                    except TimeoutError:
                        yield b": keep-alive\n\n"
            finally:
                streams.discard(follower)

        return StreamingResponse(
            body(),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )

    routes = [
        Route("/health/live", live, methods=["GET"]),
        Route("/events", post_event, methods=["POST"]),
    ]
    if fanout:
        routes.append(Route("/events/stream", stream, methods=["GET"]))
    return Starlette(routes=routes)


def bare_events_app() -> Any:
    """The ingest reference: ``POST /events`` only (and ``/health/live``)."""
    return _bare_events(fanout=False)


def bare_fanout_app() -> Any:
    """The fan-out reference: the same ``POST /events``, then the frame on every stream's
    queue; ``GET /events/stream?types=...`` reads its queue."""
    return _bare_events(fanout=True)


# --- tasks: the hand-written claim ----------------------------------------------------------

CLAIM_COLUMNS = (
    "id, description, agent_id, capability, priority, context, status, attempts, max_attempts, "
    "timeout_seconds, run_at, lease_owner, lease_expires_at, cancel_requested, approval_id, "
    "loop_state, result, error, trace_id, created_by, created_at, updated_at, started_at, "
    "completed_at"
)
RAW_CLAIM = (
    "UPDATE task SET status = {p}, attempts = attempts + 1, lease_owner = {p}, "
    "lease_expires_at = {p}, updated_at = {p}, started_at = COALESCE(started_at, {p}) "
    "WHERE id = (SELECT id FROM task WHERE (status = {p} AND run_at <= {p}) "
    "OR (status = {p} AND lease_expires_at < {p}) "
    "ORDER BY priority, run_at, id LIMIT 1{lock}) RETURNING " + CLAIM_COLUMNS
)


def raw_claimer(postgres: bool) -> Any:
    """The reference claim: one hand-written statement on Peewee's own driver connection, in
    the transaction shape the hub's ``write_transaction`` uses (``BEGIN IMMEDIATE`` on SQLite,
    ``BEGIN`` on PostgreSQL, ``COMMIT``); returns the row (a tuple) when it may run, like
    ``claim`` (attempts within the limit, no cancel requested)."""
    from db.base import database, utcnow

    sql = RAW_CLAIM.format(
        p="%s" if postgres else "?", lock=" FOR UPDATE SKIP LOCKED" if postgres else ""
    )
    begin = "BEGIN" if postgres else "BEGIN IMMEDIATE"
    names = [c.strip() for c in CLAIM_COLUMNS.split(",")]
    attempts, limit, cancel = (
        names.index(n) for n in ("attempts", "max_attempts", "cancel_requested")
    )

    def claim(worker_id: str, lease_seconds: float) -> tuple | None:
        now = utcnow()
        lease = now + dt.timedelta(seconds=lease_seconds)
        params = (
            "running", worker_id, lease, now, now, "pending", now, "running", now
        )  # fmt: skip
        cursor = database.connection().cursor()
        try:
            cursor.execute(begin)
            try:
                cursor.execute(sql, params)
                row = cursor.fetchone()
            except BaseException:
                cursor.execute("ROLLBACK")
                raise
            cursor.execute("COMMIT")
        finally:
            cursor.close()
        if row is None or row[attempts] > row[limit] or row[cancel]:
            return None  # (the hub would fail or cancel it; the bench's queue has none such)
        return row

    return claim


# --- memory: the statements keyword search issues, on a raw connection ----------------------


def capture_search(words: list[str], limit: int) -> list[tuple[str, list[Any]]]:
    """Every statement ``db.memories.keyword_search`` issues for ``words`` (SQL text and
    parameters, in order), recorded while it really runs: how many it issues depends on what
    the first finds (the all-words pass, the some-words pass when too few, the snippets)."""
    from db import base, memories

    recorded: list[tuple[str, list[Any]]] = []
    target = base.database.obj
    real = type(target).execute_sql

    def record(sql: str, params: Any = None, *args: Any, **kwargs: Any) -> Any:
        recorded.append((sql, list(params or ())))
        return real(target, sql, params, *args, **kwargs)

    target.execute_sql = record  # an instance attribute shadows the method, for this call
    try:
        memories.keyword_search(words, base.utcnow(), {}, limit)
    finally:
        del target.execute_sql
    if not recorded:
        raise BenchError("keyword_search issued no statement")
    return recorded


class RawDatabase:
    """A driver connection of its own (``sqlite3`` with the hub's pragmas, or ``psycopg`` in
    autocommit, as Peewee connects), running what ``keyword_search`` runs."""

    def __init__(self, url: str, postgres: bool) -> None:
        from db import base

        self.postgres = postgres
        if postgres:
            import psycopg

            self.connection: Any = psycopg.connect(url, autocommit=True)
        else:
            path = url.split("sqlite:///", 1)[-1]
            self.connection = sqlite3.connect(path, check_same_thread=False)
            for name, value in base.SQLITE_PRAGMAS.items():
                self.connection.execute(f"PRAGMA {name} = {value}")

    def search(self, statements: list[tuple[str, list[Any]]], limit: int) -> list[str]:
        """Every statement, in order, rows kept as tuples; the hits' keys (the search passes'
        second column), best first."""
        keys: list[str] = []
        cursor = self.connection.cursor()
        try:
            for sql, params in statements:
                cursor.execute(sql, params)
                rows = cursor.fetchall()
                if "AS score" in sql:
                    keys += [row[1] for row in rows if row[1] not in keys]
        finally:
            cursor.close()
        return keys[:limit]

    def count(self, terms: str) -> int:
        """How many memories match ``terms`` (the search statement's first parameter)."""
        if self.postgres:
            sql = "SELECT count(*) FROM memory m WHERE m.tsv @@ to_tsquery('english', %s)"
        else:
            sql = "SELECT count(*) FROM memory_fts WHERE memory_fts MATCH ?"
        cursor = self.connection.cursor()
        try:
            cursor.execute(sql, [terms])
            return int(cursor.fetchone()[0])
        finally:
            cursor.close()

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.connection.close()
