"""Event ingest and live fan-out: ``python tools/bench.py --only events``.

The issue: events ingested per second through ``POST /api/v1/events``, and p50/p99 latency
from write to arrival at 100 concurrent SSE clients. Every figure is measured side by side
with a reference app in the same run, and the hub/reference ratios are printed; nothing is
asserted.

Servers
    Every figure gets its own fresh database, migrated by the project's own code
    (``db.base.open_database`` + ``db.base.migrate``) with one admin API key
    (``hub.services.keys.create``): SQLite, ``aether.db`` in a fresh temporary data folder
    (WAL, as the hub opens it); PostgreSQL, a fresh database on the tests' throwaway server
    (``tests/pgserver.py``, started by ``bench_memory.start_postgres``; ``fsync=off``,
    ``synchronous_commit=off``), skipped when its binaries are missing. ONE server runs on it
    at a time, as one uvicorn worker process with the flags of the other measurements
    (``bench.UVICORN_FLAGS``: loopback, log level warning, no access log; uvloop/httptools
    when installed); the bench waits until it answers and is idle, measures, and stops it
    before the next server starts.

    * hub: ``hub.app:create_app`` exactly as served, task workers off (``AETHER_WORKERS=0``),
      rate limit 0, requests authenticated with ``Authorization: Bearer <admin key>``. A
      ``POST /api/v1/events`` there is: the API-key lookup, request validation against
      ``EventCreate``, ``hub.events.push`` (the event held to the end of its write transaction
      and inserted then; on PostgreSQL with an advisory lock and a ``NOTIFY``), the audit entry
      every mutating request writes (a second write transaction, after the answer is sent),
      and, in the background, the event bus's wake-up (one read of the new events per
      wake-up, even with no stream client) and the durable consumers' pass (one more write
      transaction per wake-up).
    * bare (the reference; ``bare_events_app`` and ``bare_fanout_app`` below, Starlette +
      Peewee on the same schema): ``POST /events`` reads the JSON body, runs ONE
      ``Event.insert(...)`` (the hub's columns: type, source ``api``, a new trace id, payload,
      time) in one ``db.base.write_transaction()`` in a worker thread (the hub's handlers run
      in one too) and answers 201 with the row as JSON. No auth, no validation, no audit, no
      event bus, no advisory lock or NOTIFY; it ignores the Authorization header it receives.

What ``ingest`` measures
    Per backend, on the hub and then on the bare app: ``--events-concurrency`` (16) keep-alive
    connections of a raw asyncio HTTP/1.1 client (uvloop when installed; the POST twin of
    ``bench.py``'s python load client) each post ``{"type": "bench.ping", "payload": {...}}``
    back to back, 1 s of warm-up, then ``--events-seconds`` (5) timed. Reported: events per
    second (201 answers read within the window / the window), latency p50/p99 (request
    written -> whole answer read; under saturation mostly queueing), non-201 answers and
    socket errors, the server process's CPU time per event (user + system, /proc; for
    PostgreSQL also the postmaster's and its backends'), the CPU share of the server,
    PostgreSQL, this process (the client) and everything else during the window, and the
    hub/bare ratios. Before the load one event is posted to each server and its answer
    checked (201, the same JSON keys on both).

What ``fanout`` measures
    Per backend (default both; ``--events-backends``), on the hub and then on the bare app:
    ``--sse-clients`` (100) connections, one each, open ``GET /api/v1/events/stream?types=
    bench.*`` (bare: ``/events/stream``); the bench checks that every one answers 200 with
    ``text/event-stream`` and then posts one warm-up event, waiting until all clients have
    it: every client is then registered with the server's fan-out. A writer (one more
    keep-alive connection) then posts ``--sse-events`` (200) events, one at a time, on an
    absolute schedule of ``--sse-rate`` (50) per second (when a POST takes longer than the
    interval the next follows at once), event i with ``payload: {"n": i}``. ``t_write`` is
    ``time.perf_counter()`` just before the request is written; each client stamps a frame
    when the chunk that completes it has been read (before parsing it). Latency = arrival -
    t_write, for every (client, event) pair: p50/p99/max; "all reached" = per event, the
    arrival at its last client - t_write, p50/p99 over the events (how long until everybody
    has it); the POST round trip p50/p99 (request written -> 201 read: the write committed,
    on the hub before the bus has read it). Each client must get every event exactly once, in
    order, and with the id the POST answered; anything else (a missing or repeated event, an
    ``overflow``, a stream that ends, a non-200) is an error and fails the bench. Also
    reported: the rate the writer achieved, and, over the timed phase (first timed POST ->
    the last event at every client), the server's CPU time per event (its insert and its
    delivery to every client; PostgreSQL's apart) with the hub/bare ratio, and the CPU share
    of the server, PostgreSQL, this process and everything else.

    The bare fan-out (``bare_fanout_app``): after the same insert, the POST handler frames
    the event once (``id:``/``event:``/``data:``, the hub's format) and puts the bytes on the
    in-memory asyncio queue of every stream whose ``types`` globs match (registered when its
    request arrives, unbounded); a stream is a StreamingResponse of its queue, with the
    hub's 15 s keep-alive comment. That is the floor of "write, then fan out over SSE" in one
    process. The hub instead wakes its bus after the commit (an after-commit hook, from the
    writing thread), reads the new events back from the database in a worker thread (the same
    path serves events written by other processes), offers each to every follower's bounded
    queue and frames it (``json.dumps``) once per client.

Caveats
    The client (all SSE clients, the writer and the load connections: one Python process,
    one event loop) and the server share one machine (2 cores on this project's runs): the
    client steals CPU from the server, and every SSE arrival is stamped when the client's
    loop gets to it, so its own work (100 reads per event) is in the latencies of both
    targets; the ratios are the figures to quote, the "client" CPU column says how loaded it
    was. Under saturation (ingest) latency is mostly queueing. The PostgreSQL cluster does
    not flush (``fsync=off``): commits cost less than on a durable server; SQLite runs as the
    hub runs it (WAL, ``synchronous=normal``). Single runs on a shared VM vary by 10-20%;
    anything else running skews everything: the busy share before the run and the "other"
    CPU column say how much. There are no timing assertions.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import fnmatch
import json
import os
import shutil
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import bench
import bench_memory
from bench import ROOT, BenchError, Server, log, markdown, percentile

BACKENDS = bench_memory.BACKENDS
BACKEND_LABELS = {"sqlite": "SQLite", "postgresql": "PostgreSQL"}
TARGETS = ("hub", "bare")
APPS = {
    "hub": "hub.app:create_app",
    "bare_ingest": "bench_events:bare_events_app",
    "bare_fanout": "bench_events:bare_fanout_app",
}
POST_PATHS = {"hub": "/api/v1/events", "bare": "/events"}
STREAM_PATHS = {"hub": "/api/v1/events/stream", "bare": "/events/stream"}
EVENT_TYPE = "bench.ping"
TYPES_GLOB = "bench.*"
WARMUP_S = 1.0
CONNECT_TIMEOUT_S = 30.0
ARRIVAL_TIMEOUT_S = 15.0  # after the warm-up post, and after the last timed post
KEEPALIVE_S = 15.0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("events (ingest rate and SSE fan-out latency)")
    group.add_argument(
        "--events-seconds", type=float, default=5.0, help="timed ingest load (default 5)"
    )
    group.add_argument(
        "--events-concurrency",
        type=int,
        default=16,
        help="keep-alive connections posting events (default 16)",
    )
    group.add_argument(
        "--events-backends",
        type=bench_memory.backends,
        default=list(BACKENDS),
        help="comma-separated: sqlite, postgresql (default both; PostgreSQL needs its binaries)",
    )
    group.add_argument(
        "--sse-clients", type=int, default=100, help="concurrent SSE clients (default 100)"
    )
    group.add_argument(
        "--sse-events", type=int, default=200, help="events posted to them (default 200)"
    )
    group.add_argument(
        "--sse-rate", type=float, default=50.0, help="events per second posted (default 50)"
    )


def check_arguments(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    if args.events_seconds <= 0 or args.sse_rate <= 0:
        parser.error("--events-seconds and --sse-rate must be > 0")
    if min(args.events_concurrency, args.sse_clients, args.sse_events) < 1:
        parser.error("--events-concurrency, --sse-clients and --sse-events must be >= 1")


# --- the reference apps (imported by uvicorn in their own process) --------------------------


def _bare(fanout: bool) -> Any:
    """Starlette + Peewee: ``POST /events`` inserts one row in one write transaction and
    answers it; with ``fanout``, also ``GET /events/stream`` fed from in-memory queues."""
    from starlette.applications import Starlette
    from starlette.concurrency import run_in_threadpool
    from starlette.requests import Request
    from starlette.responses import JSONResponse, Response, StreamingResponse
    from starlette.routing import Route

    from db.base import iso, open_database, utcnow, write_transaction
    from db.events import Event

    url = os.environ.get("AETHER_DATABASE_URL") or (
        f"sqlite:///{Path(os.environ['AETHER_DATA_DIR']).resolve() / 'aether.db'}"
    )
    open_database(url)
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
    return _bare(fanout=False)


def bare_fanout_app() -> Any:
    """The fan-out reference: the same ``POST /events``, then the frame on every stream's
    queue; ``GET /events/stream?types=...`` reads its queue."""
    return _bare(fanout=True)


# --- servers --------------------------------------------------------------------------------


@dataclasses.dataclass
class Served:
    server: Server
    secret: str
    pg_pid: int | None
    problems: list[str] = dataclasses.field(default_factory=list)


def prepare(url: str) -> str:
    """Migrate the database at ``url`` and make an admin key; return its secret."""
    from db import base
    from hub.services import keys

    base.open_database(url)
    try:
        base.migrate()
        _key, secret = keys.create("bench", "admin", created_by="bench")
    finally:
        base.database.close()
    return secret


@contextlib.contextmanager
def served(backend: str, target: str, phase: str, pg: Any) -> Iterator[Served]:
    """A fresh database and ONE server on it (the hub, or the bare app of ``phase``),
    answering and idle; stopped, and the database removed, afterwards."""
    from bench_memory import _log_problems

    postgres = backend == "postgresql"
    data_dir = Path(tempfile.mkdtemp(prefix=f"aether-bench-events-{phase}-"))
    dbname = f"bench_events_{phase}_{target}"
    url = pg.create_database(dbname) if postgres else f"sqlite:///{data_dir / 'aether.db'}"
    env = {"AETHER_WORKERS": "0"}
    if postgres:
        env["AETHER_DATABASE_URL"] = url
    app = APPS["hub"] if target == "hub" else APPS[f"bare_{phase}"]
    if target != "hub":  # the bare apps live in this file
        env["PYTHONPATH"] = os.pathsep.join(
            [str(ROOT / "tools"), bench.bench_env(data_dir)["PYTHONPATH"]]
        )
    server: Server | None = None
    result: Served | None = None
    try:
        secret = prepare(url)
        server = bench.start_server(target, app, data_dir, env)
        bench.wait_ready(server)
        bench.wait_idle(server)
        result = Served(server, secret, pg._proc.pid if postgres else None)
        yield result
        if server.process.poll() is not None:
            raise BenchError(f"the {target} server died:\n{server.log_tail()}")
    except Exception:
        if server is not None:
            tail = server.log_tail(15)
            if tail:
                log(f"--- last lines of the {target} server's output ---\n{tail}")
        raise
    finally:
        if server is not None:
            server.stop()
            if result is not None:
                result.problems = _log_problems(server)
        shutil.rmtree(data_dir, ignore_errors=True)
        if postgres:
            with contextlib.suppress(RuntimeError):
                pg.drop_database(dbname)


def post_request(port: int, path: str, secret: str, body: dict[str, Any]) -> bytes:
    payload = json.dumps(body, separators=(",", ":")).encode()
    return (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAuthorization: Bearer {secret}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(payload)}\r\n\r\n"
    ).encode() + payload


# --- ingest ---------------------------------------------------------------------------------


async def _post_load(port: int, request: bytes, seconds: float, concurrency: int) -> dict:
    """``bench.keep_alive_load`` of a POST answered 201."""
    latencies, counts = await bench.keep_alive_load(port, request, seconds, concurrency, 201)
    counts["non201"] = counts.pop("unexpected")
    ms = [value / 1e6 for value in latencies]
    good = len(latencies) - counts["non201"]
    return {
        "requests": len(latencies),
        "created": good,
        "seconds": seconds,
        "rps": good / seconds,
        "p50_ms": percentile(ms, 50),
        "p99_ms": percentile(ms, 99),
        **counts,
    }


def ingest_one(backend: str, target: str, args: argparse.Namespace, pg: Any) -> dict[str, Any]:
    from bench_tasks import CpuMeter

    label = f"ingest {BACKEND_LABELS[backend]} {target}"
    with served(backend, target, "ingest", pg) as s:
        path = POST_PATHS[target]
        sample = bench.api(
            s.server, "POST", path, s.secret, {"type": EVENT_TYPE, "payload": {"n": -1}}
        )
        if not isinstance(sample, dict) or not isinstance(sample.get("id"), int):
            raise BenchError(f"{label}: POST {path} answered {sample!r}")
        body = {"type": EVENT_TYPE, "payload": {"n": 0, "note": "ingest"}}
        request = post_request(s.server.port, path, s.secret, body)
        log(
            f"events: {label}: {WARMUP_S:g}s warm-up, {args.events_seconds:g}s of "
            f"{args.events_concurrency} connections"
        )
        bench.run_async(_post_load(s.server.port, request, WARMUP_S, args.events_concurrency))
        meter = CpuMeter([s.server], s.pg_pid)
        meter.start()
        raw = bench.run_async(
            _post_load(s.server.port, request, args.events_seconds, args.events_concurrency)
        )
        cpu = meter.stop()
        # Let the hub's after-answer work (audit entries) finish before it is stopped.
        bench.wait_idle(s.server)
    created = raw["created"]

    def per_event(seconds: float | None) -> float | None:
        return None if seconds is None or not created else round(seconds / created * 1e6, 1)

    return {
        "backend": backend,
        "target": target,
        **{k: round(v, 3) if isinstance(v, float) else v for k, v in raw.items()},
        "server_cpu_us_per_event": per_event(cpu.get("hubs_s")),
        "postgres_cpu_us_per_event": per_event(cpu.get("postgres_s")),
        "cpu_percent": _cpu_percent(cpu),
        "sample_keys": sorted(sample),
        "log_problems": s.problems[:3],
        "log_problem_count": len(s.problems),
    }


def _cpu_percent(cpu: dict[str, float | None]) -> dict[str, float | None]:
    return {
        ("server" if k == "hubs" else k): None if v is None else round(v, 1)
        for k, v in cpu.items()
        if not k.endswith("_s")
    }


# --- fan-out --------------------------------------------------------------------------------


@dataclasses.dataclass
class Listener:
    """One SSE client: per event number ``n``, when it arrived and with which id."""

    status: int = 0
    order: list[int] = dataclasses.field(default_factory=list)
    arrivals: dict[int, float] = dataclasses.field(default_factory=dict)
    ids: dict[int, int] = dataclasses.field(default_factory=dict)
    keepalives: int = 0
    error: str = ""


class Progress:
    """Counts first arrivals; wakes whoever waits for a given total."""

    def __init__(self) -> None:
        self.count = 0
        self.goal = 0
        self.reached = asyncio.Event()
        self.connected = 0
        self.all_connected = asyncio.Event()
        self.clients = 0

    def arrived(self) -> None:
        self.count += 1
        if self.count >= self.goal:
            self.reached.set()

    def expect(self, goal: int) -> None:
        self.goal = goal
        self.reached.clear()
        if self.count >= goal:
            self.reached.set()

    def connect(self) -> None:
        self.connected += 1
        if self.connected >= self.clients:
            self.all_connected.set()


async def listen(port: int, request: bytes, me: Listener, progress: Progress) -> None:
    """Read one SSE stream until cancelled, stamping each frame when the chunk that completes
    it has been read."""
    clock = time.perf_counter
    writer: asyncio.StreamWriter | None = None
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(request)
        head = await reader.readuntil(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        me.status = int(lines[0].split(b" ", 2)[1])
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            headers[name.strip().lower()] = value.strip().lower()
        if me.status != 200 or b"text/event-stream" not in headers.get(b"content-type", b""):
            raise ValueError(f"answered {me.status} {headers.get(b'content-type', b'')!r}")
        if b"chunked" not in headers.get(b"transfer-encoding", b""):
            raise ValueError("the stream is not chunked")
        progress.connect()
        buffer = b""
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
            data = await reader.readexactly(size + 2)
            if size == 0:
                raise ValueError("the server ended the stream")
            now = clock()
            buffer += data[:-2]
            while b"\n\n" in buffer:
                frame, buffer = buffer.split(b"\n\n", 1)
                if frame.startswith(b":"):
                    me.keepalives += 1
                    continue
                fields = dict(line.split(b": ", 1) for line in frame.split(b"\n") if b": " in line)
                if fields.get(b"event") != EVENT_TYPE.encode():
                    raise ValueError(f"unexpected frame {frame[:200]!r}")
                event = json.loads(fields[b"data"])
                n = event["payload"]["n"]
                me.order.append(n)
                if n not in me.arrivals:
                    me.arrivals[n] = now
                    me.ids[n] = int(fields.get(b"id", b"0"))
                    progress.arrived()
    except asyncio.CancelledError:
        raise
    except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError) as exc:
        me.error = me.error or f"{type(exc).__name__}: {exc}"[:200]
    finally:
        if writer is not None:
            writer.close()


async def fanout_round(
    port: int, target: str, secret: str, args: argparse.Namespace, meter: Any
) -> dict:
    """Connect the SSE clients, post the warm-up event, then the timed ones (``meter``
    measures the CPU from the first timed post until every client has the last one)."""
    from bench_tasks import _read_response as read_full_response

    clients, count, interval = args.sse_clients, args.sse_events, 1.0 / args.sse_rate
    stream_request = (
        f"GET {STREAM_PATHS[target]}?types={TYPES_GLOB} HTTP/1.1\r\n"
        f"Host: 127.0.0.1:{port}\r\nAuthorization: Bearer {secret}\r\n"
        "Accept: text/event-stream\r\n\r\n"
    ).encode()
    listeners = [Listener() for _ in range(clients)]
    progress = Progress()
    progress.clients = clients
    tasks = [asyncio.ensure_future(listen(port, stream_request, me, progress)) for me in listeners]
    writer: asyncio.StreamWriter | None = None
    errors: list[str] = []
    t_write: list[float] = []
    round_trips: list[float] = []
    posted_ids: dict[int, int] = {}
    try:
        # Until every client has its 200 headers, one gives up (its task ends) or time is up.
        waiter = asyncio.ensure_future(progress.all_connected.wait())
        await asyncio.wait(
            [waiter, *tasks], timeout=CONNECT_TIMEOUT_S, return_when=asyncio.FIRST_COMPLETED
        )
        waiter.cancel()
        if not progress.all_connected.is_set():
            bad = [me.error or "no answer" for me in listeners if me.error or me.status != 200]
            raise BenchError(
                f"{progress.connected}/{clients} SSE clients connected within "
                f"{CONNECT_TIMEOUT_S:g}s; e.g. {bad[:2]}"
            )
        reader, writer = await asyncio.open_connection("127.0.0.1", port)

        async def post(n: int) -> int:
            assert writer is not None
            request = post_request(
                port, POST_PATHS[target], secret, {"type": EVENT_TYPE, "payload": {"n": n}}
            )
            sent = time.perf_counter()
            writer.write(request)
            status, _headers, body = await read_full_response(reader)
            if n >= 0:
                t_write.append(sent)
                round_trips.append((time.perf_counter() - sent) * 1e3)
            if status != 201:
                raise BenchError(f"POST {POST_PATHS[target]} answered {status}: {body[:200]!r}")
            posted_ids[n] = int(json.loads(body)["id"])
            return posted_ids[n]

        # Warm-up: every client registered with the fan-out gets this one.
        progress.expect(clients)
        await post(-1)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(progress.reached.wait(), ARRIVAL_TIMEOUT_S)
        if not progress.reached.is_set():
            raise BenchError(
                f"only {progress.count}/{clients} SSE clients got the warm-up event within "
                f"{ARRIVAL_TIMEOUT_S:g}s; e.g. {[me.error for me in listeners if me.error][:2]}"
            )
        progress.expect(clients * (count + 1))
        meter.start()
        started = time.perf_counter()
        for n in range(count):
            delay = started + n * interval - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            await post(n)
        written = time.perf_counter() - started
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(progress.reached.wait(), ARRIVAL_TIMEOUT_S)
        drained = time.perf_counter() - started
        cpu = meter.stop()
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if writer is not None:
            writer.close()

    latencies: list[float] = []
    last_arrivals: list[float] = []
    complete = 0
    expected = list(range(count))
    for index, me in enumerate(listeners):
        got = [n for n in me.order if n >= 0]
        if me.error:
            errors.append(f"client {index}: {me.error}")
        if got != expected:
            missing = len(set(expected) - set(got))
            dupes = len(got) - len(set(got))
            errors.append(
                f"client {index}: {len(got)} events for {count} sent ({missing} missing, "
                f"{dupes} repeated{', out of order' if sorted(set(got)) != got else ''})"
            )
        else:
            complete += 1
        wrong = [n for n in got if me.ids.get(n) != posted_ids.get(n)]
        if wrong:
            errors.append(f"client {index}: {len(wrong)} events with another id than posted")
    for n in range(count):
        reached = [me.arrivals[n] for me in listeners if n in me.arrivals]
        latencies += [(at - t_write[n]) * 1e3 for at in reached]
        if len(reached) == clients:
            last_arrivals.append((max(reached) - t_write[n]) * 1e3)
    return {
        "clients": clients,
        "events": count,
        "complete_clients": complete,
        "delivered": len(latencies),
        "written_s": round(written, 3),
        "drained_s": round(drained, 3),
        "achieved_rate": round(count / written, 1) if written > 0 else None,
        "p50_ms": round(percentile(latencies, 50), 3),
        "p99_ms": round(percentile(latencies, 99), 3),
        "max_ms": round(max(latencies, default=0.0), 3),
        "all_p50_ms": round(percentile(last_arrivals, 50), 3),
        "all_p99_ms": round(percentile(last_arrivals, 99), 3),
        "post_p50_ms": round(percentile(round_trips, 50), 3),
        "post_p99_ms": round(percentile(round_trips, 99), 3),
        "keepalives": sum(me.keepalives for me in listeners),
        "cpu": cpu,
        "errors": len(errors),
        "error_samples": errors[:5],
    }


def fanout_one(backend: str, target: str, args: argparse.Namespace, pg: Any) -> dict[str, Any]:
    from bench_tasks import CpuMeter

    label = f"fan-out {BACKEND_LABELS[backend]} {target}"
    with served(backend, target, "fanout", pg) as s:
        log(
            f"events: {label}: {args.sse_clients} SSE clients, {args.sse_events} events at "
            f"{args.sse_rate:g}/s"
        )
        meter = CpuMeter([s.server], s.pg_pid)
        figure = bench.run_async(fanout_round(s.server.port, target, s.secret, args, meter))
    if figure["errors"]:
        log(f"events: {label}: {figure['errors']} errors, e.g. {figure['error_samples'][:2]}")
    cpu = figure.pop("cpu")

    def per_event(seconds: float | None) -> float | None:
        return None if seconds is None else round(seconds / figure["events"] * 1e6)

    return {
        "backend": backend,
        "target": target,
        **figure,
        "server_cpu_us_per_event": per_event(cpu.get("hubs_s")),
        "postgres_cpu_us_per_event": per_event(cpu.get("postgres_s")),
        "cpu_percent": _cpu_percent(cpu),
        "log_problems": s.problems[:3],
        "log_problem_count": len(s.problems),
    }


# --- the measurement ------------------------------------------------------------------------


def _ratio(hub: float | None, bare: float | None) -> float | None:
    return round(hub / bare, 2) if hub is not None and bare else None


def measure_events(args: argparse.Namespace) -> dict[str, Any]:
    """Ingest rate, then SSE fan-out latency, per backend, hub and bare one at a time."""
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))

    about = bench.machine()
    busy = bench.busy_percent()
    if busy is not None and busy > 20:
        log(f"warning: the machine is {busy:.0f}% busy before the bench starts: noisy figures")
    nofile = bench.raise_nofile(4 * (args.sse_clients + args.events_concurrency) + 256)
    pg = None
    if "postgresql" in args.events_backends:
        log("events: PostgreSQL through bench_memory.start_postgres")
        pg = bench_memory.start_postgres("events")
    version = os.path.basename(os.path.dirname(pg.bindir)) if pg is not None else None
    backends = [b for b in args.events_backends if b != "postgresql" or pg is not None]
    skipped = [b for b in args.events_backends if b not in backends]
    ingest: list[dict[str, Any]] = []
    fanout: list[dict[str, Any]] = []
    try:
        for backend in backends:
            pair = {t: ingest_one(backend, t, args, pg) for t in TARGETS}
            if pair["hub"]["sample_keys"] != pair["bare"]["sample_keys"]:
                log(f"warning: the hub and the bare app answer with different keys: {pair}")
            for name, key in (("rps", "rps"), ("p50", "p50_ms"), ("p99", "p99_ms")):
                pair["hub"][f"ratio_{name}"] = _ratio(pair["hub"][key], pair["bare"][key])
            pair["hub"]["ratio_cpu"] = _ratio(
                pair["hub"]["server_cpu_us_per_event"], pair["bare"]["server_cpu_us_per_event"]
            )
            ingest += [pair["hub"], pair["bare"]]
        for backend in backends:
            pair = {t: fanout_one(backend, t, args, pg) for t in TARGETS}
            for name in ("p50", "p99", "all_p50", "post_p50"):
                key = f"{name}_ms"
                pair["hub"][f"ratio_{name}"] = _ratio(pair["hub"][key], pair["bare"][key])
            pair["hub"]["ratio_cpu"] = _ratio(
                pair["hub"]["server_cpu_us_per_event"], pair["bare"]["server_cpu_us_per_event"]
            )
            fanout += [pair["hub"], pair["bare"]]
    finally:
        if pg is not None:
            pg.stop()
    return {
        "machine": {**about, "busy_before_percent": busy},
        "postgresql": version,
        "nofile": nofile,
        "config": {
            "seconds": args.events_seconds,
            "warmup": WARMUP_S,
            "concurrency": args.events_concurrency,
            "sse_clients": args.sse_clients,
            "sse_events": args.sse_events,
            "sse_rate": args.sse_rate,
        },
        "ingest": ingest,
        "fanout": fanout,
        "skipped": skipped,
    }


def failed(result: dict[str, Any]) -> bool:
    """True when a figure is not valid: non-201 answers or socket errors while ingesting, or
    an SSE client that missed, repeated or reordered an event (logged)."""
    bad = False
    for f in result["ingest"]:
        if f["non201"] or f["socket_errors"]:
            bad = True
            log(
                f"FAIL: events ingest on {BACKEND_LABELS[f['backend']]}, {f['target']}: "
                f"{f['non201']} non-201 answers (first: {f['first_bad_status'] or '-'}), "
                f"{f['socket_errors']} socket errors"
            )
    for f in result["fanout"]:
        if f["errors"]:
            bad = True
            log(
                f"FAIL: events fan-out on {BACKEND_LABELS[f['backend']]}, {f['target']}: "
                f"{f['errors']} errors, e.g. {f['error_samples'][:2]}"
            )
    return bad


def render_events(result: dict[str, Any]) -> str:
    def num(value: float | None, spec: str = ".2f") -> str:
        return "-" if value is None else format(value, spec)

    def cpu(f: dict[str, Any]) -> str:
        c = f["cpu_percent"]
        parts = [c["server"], c["postgres"] if f["backend"] == "postgresql" else None]
        return " / ".join(num(v, ".0f") for v in [*parts, c["client"], c["other"]])

    def server_cpu(f: dict[str, Any]) -> str:
        cell = num(f["server_cpu_us_per_event"], ",.0f")
        if f["backend"] == "postgresql":
            cell += f" ({num(f['postgres_cpu_us_per_event'], ',.0f')})"
        return cell

    c = result["config"]
    ingest_rows: list[tuple[str, ...]] = [
        (
            "backend, target",
            "events/s",
            "hub/bare events/s",
            "p50 / p99 ms",
            "hub/bare p50 / p99",
            "server CPU µs/event (pg)",
            "hub/bare server CPU",
            "non-201 / socket errors",
            "CPU % server / pg / client / other",
        )
    ]
    for f in result["ingest"]:
        hub = f["target"] == "hub"
        ingest_rows.append(
            (
                f"{BACKEND_LABELS[f['backend']]}, {f['target']}",
                f"{f['rps']:,.0f}",
                num(f["ratio_rps"]) if hub else "",
                f"{f['p50_ms']:.2f} / {f['p99_ms']:.2f}",
                f"{num(f['ratio_p50'])} / {num(f['ratio_p99'])}" if hub else "",
                server_cpu(f),
                num(f["ratio_cpu"]) if hub else "",
                f"{f['non201']} / {f['socket_errors']}",
                cpu(f),
            )
        )
    fan_rows: list[tuple[str, ...]] = [
        (
            "backend, target",
            "delivered",
            "write -> arrival p50 / p99 / max ms",
            "hub/bare p50 / p99",
            "all clients reached p50 / p99 ms",
            "POST round trip p50 / p99 ms",
            "posted at /s",
            "server CPU µs/event (pg)",
            "hub/bare server CPU",
            "CPU % server / pg / client / other",
        )
    ]
    for f in result["fanout"]:
        hub = f["target"] == "hub"
        fan_rows.append(
            (
                f"{BACKEND_LABELS[f['backend']]}, {f['target']}",
                f"{f['delivered']:,}/{f['clients'] * f['events']:,}",
                f"{f['p50_ms']:.2f} / {f['p99_ms']:.2f} / {f['max_ms']:.2f}",
                f"{num(f['ratio_p50'])} / {num(f['ratio_p99'])}" if hub else "",
                f"{f['all_p50_ms']:.2f} / {f['all_p99_ms']:.2f}",
                f"{f['post_p50_ms']:.2f} / {f['post_p99_ms']:.2f}",
                num(f["achieved_rate"], ".1f"),
                server_cpu(f),
                num(f["ratio_cpu"]) if hub else "",
                cpu(f),
            )
        )
    notes: list[str] = []
    for f in [*result["ingest"], *result["fanout"]]:
        where = f"{BACKEND_LABELS[f['backend']]}, {f['target']}"
        if f.get("errors"):
            notes.append(f"fan-out errors on {where}: " + "; ".join(f["error_samples"][:3]))
        if f["log_problem_count"]:
            notes.append(
                f"the {where} server logged {f['log_problem_count']} warning/error lines, e.g. "
                f"{f['log_problems'][0]}"
            )
    for f in result["fanout"]:
        if f["achieved_rate"] is not None and f["achieved_rate"] < 0.9 * c["sse_rate"]:
            notes.append(
                f"fan-out {BACKEND_LABELS[f['backend']]}, {f['target']}: the writer only "
                f"managed {f['achieved_rate']:.1f} events/s (POSTs slower than the interval)"
            )
    if result["skipped"]:
        notes.append("skipped (no PostgreSQL binaries): " + ", ".join(result["skipped"]))
    m = result["machine"]
    return "\n".join(
        [
            f"### Event ingest (POST, {c['concurrency']} keep-alive connections, "
            f"{c['warmup']:g} s warm-up + {c['seconds']:g} s)",
            "",
            *markdown(ingest_rows),
            "",
            f"### Event fan-out ({c['sse_clients']} SSE clients, {c['sse_events']} events "
            f"posted one at a time at {c['sse_rate']:g}/s)",
            "",
            *markdown(fan_rows),
            "",
            *notes,
            f"machine: {m['cpu']}, {m['cores']} cores, {m['implementation']} {m['python']}; "
            f"uvicorn on {m['loop']} + {m['http']}, 1 worker process, one server at a time, "
            f"no task workers; CPU busy before the run: {bench._percent(m['busy_before_percent'])}"
            "; client and server on the same machine, loopback; soft RLIMIT_NOFILE "
            f"{result['nofile']}",
            f"PostgreSQL {result['postgresql'] or '(not run)'}: throwaway cluster of "
            "tests/pgserver.py (fsync off); SQLite: WAL, synchronous=normal, as the hub opens it.",
            "hub = hub.app:create_app (API key, validation, event log + bus, audit entry per "
            "POST); bare = Starlette + ONE Event.insert in one write_transaction, answered as "
            "JSON, no auth/validation/audit; its fan-out frames each event once and puts it on "
            "every stream's in-memory queue.",
            "ingest: events/s = 201 answers / window; latency = request written -> answer read "
            "(under saturation mostly queueing); server CPU = the server process's user+system "
            "time per event (pg: postmaster + backends).",
            "fan-out: latency = the client reading the frame - just before the POST was "
            "written, per (client, event); all clients reached = per event, its last arrival; "
            "every client must get every event once, in order, with the posted id; server CPU "
            "= per event, its insert and delivery to all clients. The "
            "client's own work (one Python process for all clients) is in both targets' "
            "figures: compare the ratios. CPU % = process CPU / wall time (100 = one core).",
        ]
    )
