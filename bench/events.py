"""``events``: the event log's ingest rate and its live SSE fan-out latency.

Events ingested per second through ``POST /api/v1/events``, and p50/p99 latency from write to
arrival at 100 concurrent SSE clients. Every figure is measured side by side with a reference
app in the same run, and the hub/reference ratios are printed; nothing is asserted.

Servers
    Every figure gets its own fresh database, migrated by the project's own code
    (``db.base.open_database`` + ``db.base.migrate``) with one admin API key
    (``hub.services.keys.create``): SQLite, ``aether.db`` in a fresh temporary data folder
    (WAL, as the hub opens it); PostgreSQL, a fresh database on the run's throwaway server.
    ONE server runs on it at a time, as one uvicorn worker process with the flags of the other
    measurements; the bench waits until it answers and is idle, measures, and stops it before
    the next server starts.

    * hub: ``hub.app:create_app`` exactly as served, task workers off (``AETHER_WORKERS=0``),
      rate limit 0, requests authenticated with ``Authorization: Bearer <admin key>``. A
      ``POST /api/v1/events`` there is: the API-key lookup, request validation against
      ``EventCreate``, the event log's push (the event held to the end of its write
      transaction and inserted then; on PostgreSQL with an advisory lock and a ``NOTIFY``),
      the audit entry every mutating request writes, and, in the background, the event bus's
      wake-up and the durable consumers' pass.
    * bare (the reference; ``bench.references.bare_events_app`` and ``bare_fanout_app``,
      Starlette + Peewee on the same schema): ``POST /events`` reads the JSON body, runs ONE
      ``Event.insert(...)`` (the hub's columns) in one ``db.base.write_transaction()`` in a
      worker thread and answers 201 with the row as JSON. No auth, no validation, no audit, no
      event bus, no advisory lock or NOTIFY; it ignores the Authorization header it receives.

What ``ingest`` measures
    Per backend, on the hub and then on the bare app: ``--events-concurrency`` (16) keep-alive
    connections of the raw asyncio load client each post ``{"type": "bench.ping", "payload":
    {...}}`` back to back, 1 s of warm-up, then ``--events-seconds`` (5) timed. Reported:
    events per second (201 answers read within the window / the window), latency p50/p99,
    non-201 answers and socket errors, the server process's CPU time per event (for PostgreSQL
    also the postmaster's and its backends'), the CPU share of the server, PostgreSQL, this
    process (the client) and everything else during the window, and the hub/bare ratios.
    Before the load one event is posted to each server and its answer checked (201, the same
    JSON keys on both).

What ``fanout`` measures
    Per backend, on the hub and then on the bare app: ``--sse-clients`` (100) connections,
    one each, open ``GET /api/v1/events/stream?types=bench.*`` (bare: ``/events/stream``); the
    bench checks that every one answers 200 with ``text/event-stream`` and then posts one
    warm-up event, waiting until all clients have it. A writer (one more keep-alive connection)
    then posts ``--sse-events`` (200) events, one at a time, on an absolute schedule of
    ``--sse-rate`` (50) per second, event i with ``payload: {"n": i}``. ``t_write`` is
    ``time.perf_counter()`` just before the request is written; each client stamps a frame
    when the chunk that completes it has been read. Latency = arrival - t_write, for every
    (client, event) pair: p50/p99/max; "all reached" = per event, the arrival at its last
    client - t_write, p50/p99; the POST round trip p50/p99. Each client must get every event
    exactly once, in order, and with the id the POST answered; anything else is an error and
    fails the bench. Also reported: the rate the writer achieved, and, over the timed phase,
    the server's CPU time per event with the hub/bare ratio, and the CPU shares.

Caveats
    The client (all SSE clients, the writer and the load connections: one Python process, one
    event loop) and the server share one machine: every SSE arrival is stamped when the
    client's loop gets to it, so its own work is in the latencies of both targets; the ratios
    are the figures to quote. The PostgreSQL cluster does not flush (``fsync=off``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from bench import harness, references
from bench.harness import (
    BACKEND_LABELS,
    BACKENDS,
    BenchError,
    Context,
    CpuMeter,
    Server,
    log,
    percentile,
)
from bench.report import Table, num, pair, percent, ratio

NAME = "events"
TARGETS = ("hub", "bare")
BARE_APPS = {"ingest": references.BARE_EVENTS_APP, "fanout": references.BARE_FANOUT_APP}
POST_PATHS = {"hub": "/api/v1/events", "bare": "/events"}
STREAM_PATHS = {"hub": "/api/v1/events/stream", "bare": "/events/stream"}
EVENT_TYPE = "bench.ping"
TYPES_GLOB = "bench.*"
CONNECT_TIMEOUT_S = 30.0
ARRIVAL_TIMEOUT_S = 15.0  # after the warm-up post, and after the last timed post
SMOKE = {
    "events_seconds": 0.5,
    "events_concurrency": 4,
    "sse_clients": 5,
    "sse_events": 10,
    "sse_rate": 100.0,
    "events_warmup": 0.2,
}


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
        type=harness.backend_list,
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
    parser.set_defaults(events_warmup=1.0)  # seconds of ingest load before the timed window


def check_arguments(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    if args.events_seconds <= 0 or args.sse_rate <= 0:
        parser.error("--events-seconds and --sse-rate must be > 0")
    if min(args.events_concurrency, args.sse_clients, args.sse_events) < 1:
        parser.error("--events-concurrency, --sse-clients and --sse-events must be >= 1")


# --- servers --------------------------------------------------------------------------------


@dataclasses.dataclass
class Served:
    server: Server
    secret: str
    pg_pid: int | None
    problems: list[str] = dataclasses.field(default_factory=list)


@contextlib.contextmanager
def served(backend: str, target: str, phase: str, ctx: Context) -> Iterator[Served]:
    """A fresh database and ONE server on it (the hub, or the bare app of ``phase``),
    answering and idle; stopped, and the database removed, afterwards."""
    postgres = backend == "postgresql"
    pg = ctx.postgres.server if postgres else None
    data_dir = Path(tempfile.mkdtemp(prefix=f"aether-bench-events-{phase}-"))
    dbname = f"bench_events_{phase}_{target}"
    url = pg.create_database(dbname) if pg is not None else f"sqlite:///{data_dir / 'aether.db'}"
    env = {"AETHER_WORKERS": "0"}
    if postgres:
        env["AETHER_DATABASE_URL"] = url
    servers: list[Server] = []
    result: Served | None = None
    try:
        with harness.running(servers):
            secret = harness.prepare_database(url)
            if target == "hub":
                servers.append(harness.start_hub(target, data_dir, env))
            else:
                servers.append(harness.start_server(target, BARE_APPS[phase], data_dir, env))
            server = servers[0]
            harness.wait_ready(server)
            harness.wait_idle(server)
            result = Served(server, secret, ctx.postgres.pid if postgres else None)
            yield result
            server.check_alive()
    finally:
        if result is not None:
            result.problems = result.server.problems()
        shutil.rmtree(data_dir, ignore_errors=True)
        if pg is not None:
            with contextlib.suppress(RuntimeError):
                pg.drop_database(dbname)


# --- ingest ---------------------------------------------------------------------------------


async def _post_load(port: int, request: bytes, seconds: float, concurrency: int) -> dict:
    """``harness.keep_alive_load`` of a POST answered 201."""
    latencies, counts = await harness.keep_alive_load(port, request, seconds, concurrency, 201)
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


def _server_cpu_percent(cpu: dict[str, float | None]) -> dict[str, float | None]:
    return {("server" if k == "hubs" else k): v for k, v in harness.cpu_percent(cpu).items()}


def ingest_one(backend: str, target: str, args: argparse.Namespace, ctx: Context) -> dict:
    label = f"ingest {BACKEND_LABELS[backend]} {target}"
    with served(backend, target, "ingest", ctx) as s:
        path = POST_PATHS[target]
        sample = harness.api(
            s.server, "POST", path, s.secret, {"type": EVENT_TYPE, "payload": {"n": -1}}
        )
        if not isinstance(sample, dict) or not isinstance(sample.get("id"), int):
            raise BenchError(f"{label}: POST {path} answered {sample!r}")
        body = {"type": EVENT_TYPE, "payload": {"n": 0, "note": "ingest"}}
        request = harness.post_request(s.server.port, path, s.secret, body)
        log(
            f"events: {label}: {args.events_warmup:g}s warm-up, {args.events_seconds:g}s of "
            f"{args.events_concurrency} connections"
        )
        port, connections = s.server.port, args.events_concurrency
        harness.run_async(_post_load(port, request, args.events_warmup, connections))
        meter = CpuMeter([s.server], s.pg_pid)
        meter.start()
        raw = harness.run_async(_post_load(port, request, args.events_seconds, connections))
        cpu = meter.stop()
        # Let the hub's after-answer work (audit entries) finish before it is stopped.
        harness.wait_idle(s.server)
    created = raw["created"]

    def per_event(seconds: float | None) -> float | None:
        return None if seconds is None or not created else round(seconds / created * 1e6, 1)

    return {
        "backend": backend,
        "target": target,
        **{k: round(v, 3) if isinstance(v, float) else v for k, v in raw.items()},
        "server_cpu_us_per_event": per_event(cpu.get("hubs_s")),
        "postgres_cpu_us_per_event": per_event(cpu.get("postgres_s")),
        "cpu_percent": _server_cpu_percent(cpu),
        "sample_keys": sorted(sample),
        "log_problems": s.problems[:3],
        "log_problem_count": len(s.problems),
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

    def __init__(self, clients: int) -> None:
        self.count = 0
        self.goal = 0
        self.reached = asyncio.Event()
        self.connected = 0
        self.all_connected = asyncio.Event()
        self.clients = clients

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
    port: int, target: str, secret: str, args: argparse.Namespace, meter: CpuMeter
) -> dict:
    """Connect the SSE clients, post the warm-up event, then the timed ones (``meter``
    measures the CPU from the first timed post until every client has the last one)."""
    clients, count, interval = args.sse_clients, args.sse_events, 1.0 / args.sse_rate
    stream_request = (
        f"GET {STREAM_PATHS[target]}?types={TYPES_GLOB} HTTP/1.1\r\n"
        f"Host: 127.0.0.1:{port}\r\nAuthorization: Bearer {secret}\r\n"
        "Accept: text/event-stream\r\n\r\n"
    ).encode()
    listeners = [Listener() for _ in range(clients)]
    progress = Progress(clients)
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
            request = harness.post_request(
                port, POST_PATHS[target], secret, {"type": EVENT_TYPE, "payload": {"n": n}}
            )
            sent = time.perf_counter()
            writer.write(request)
            status, _headers, body = await harness.read_response(reader)
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


def fanout_one(backend: str, target: str, args: argparse.Namespace, ctx: Context) -> dict:
    label = f"fan-out {BACKEND_LABELS[backend]} {target}"
    with served(backend, target, "fanout", ctx) as s:
        log(
            f"events: {label}: {args.sse_clients} SSE clients, {args.sse_events} events at "
            f"{args.sse_rate:g}/s"
        )
        meter = CpuMeter([s.server], s.pg_pid)
        figure = harness.run_async(fanout_round(s.server.port, target, s.secret, args, meter))
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
        "cpu_percent": _server_cpu_percent(cpu),
        "log_problems": s.problems[:3],
        "log_problem_count": len(s.problems),
    }


# --- the measurement ------------------------------------------------------------------------


def measure(args: argparse.Namespace, ctx: Context) -> dict[str, Any]:
    """Ingest rate, then SSE fan-out latency, per backend, hub and bare one at a time."""
    busy = ctx.busy_before()
    nofile = harness.raise_nofile(4 * (args.sse_clients + args.events_concurrency) + 256)
    pg = ctx.postgres.get(NAME) if "postgresql" in args.events_backends else None
    backends = [b for b in args.events_backends if b != "postgresql" or pg is not None]
    skipped = [b for b in args.events_backends if b not in backends]
    ingest: list[dict[str, Any]] = []
    fanout: list[dict[str, Any]] = []
    for backend in backends:
        pair_ = {t: ingest_one(backend, t, args, ctx) for t in TARGETS}
        hub, bare = pair_["hub"], pair_["bare"]
        if hub["sample_keys"] != bare["sample_keys"]:
            log(f"warning: the hub and the bare app answer with different keys: {pair_}")
        for name, key in (("rps", "rps"), ("p50", "p50_ms"), ("p99", "p99_ms")):
            hub[f"ratio_{name}"] = ratio(hub[key], bare[key])
        hub["ratio_cpu"] = ratio(hub["server_cpu_us_per_event"], bare["server_cpu_us_per_event"])
        ingest += [hub, bare]
    for backend in backends:
        pair_ = {t: fanout_one(backend, t, args, ctx) for t in TARGETS}
        hub, bare = pair_["hub"], pair_["bare"]
        for name in ("p50", "p99", "all_p50", "post_p50"):
            hub[f"ratio_{name}"] = ratio(hub[f"{name}_ms"], bare[f"{name}_ms"])
        hub["ratio_cpu"] = ratio(hub["server_cpu_us_per_event"], bare["server_cpu_us_per_event"])
        fanout += [hub, bare]
    return {
        "busy_before_percent": busy,
        "postgresql": ctx.postgres.version,
        "nofile": nofile,
        "config": {
            "seconds": args.events_seconds,
            "warmup": args.events_warmup,
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


def count(result: dict[str, Any]) -> int:
    return sum(1 for f in result["ingest"] if f["created"]) + sum(
        1 for f in result["fanout"] if f["delivered"]
    )


def _where(f: dict[str, Any]) -> str:
    return f"{BACKEND_LABELS[f['backend']]}, {f['target']}"


def _hub_only(key: str, *more: str) -> Any:
    """A cell with the hub/bare ratio(s) ``key`` (/ ``more``) on the hub's row, blank on the
    bare app's."""

    def cell(f: dict[str, Any]) -> str:
        if f["target"] != "hub":
            return ""
        return " / ".join(num(f[k]) for k in (key, *more))

    return cell


def _server_cpu(f: dict[str, Any]) -> str:
    text = num(f["server_cpu_us_per_event"], ",.0f")
    if f["backend"] == "postgresql":
        text += f" ({num(f['postgres_cpu_us_per_event'], ',.0f')})"
    return text


def _cpu(f: dict[str, Any]) -> str:
    c = f["cpu_percent"]
    parts = [c["server"], c["postgres"] if f["backend"] == "postgresql" else None]
    return " / ".join(num(v, ".0f") for v in [*parts, c["client"], c["other"]])


def tables(result: dict[str, Any]) -> list[Table]:
    c = result["config"]
    ingest_columns = [
        ("backend, target", _where),
        ("events/s", lambda f: f"{f['rps']:,.0f}"),
        ("hub/bare events/s", _hub_only("ratio_rps")),
        ("p50 / p99 ms", lambda f: pair(f["p50_ms"], f["p99_ms"])),
        ("hub/bare p50 / p99", _hub_only("ratio_p50", "ratio_p99")),
        ("server CPU µs/event (pg)", _server_cpu),
        ("hub/bare server CPU", _hub_only("ratio_cpu")),
        ("non-201 / socket errors", lambda f: f"{f['non201']} / {f['socket_errors']}"),
        ("CPU % server / pg / client / other", _cpu),
    ]
    fan_columns = [
        ("backend, target", _where),
        ("delivered", lambda f: f"{f['delivered']:,}/{f['clients'] * f['events']:,}"),
        (
            "write -> arrival p50 / p99 / max ms",
            lambda f: f"{f['p50_ms']:.2f} / {f['p99_ms']:.2f} / {f['max_ms']:.2f}",
        ),
        ("hub/bare p50 / p99", _hub_only("ratio_p50", "ratio_p99")),
        ("all clients reached p50 / p99 ms", lambda f: pair(f["all_p50_ms"], f["all_p99_ms"])),
        ("POST round trip p50 / p99 ms", lambda f: pair(f["post_p50_ms"], f["post_p99_ms"])),
        ("posted at /s", lambda f: num(f["achieved_rate"], ".1f")),
        ("server CPU µs/event (pg)", _server_cpu),
        ("hub/bare server CPU", _hub_only("ratio_cpu")),
        ("CPU % server / pg / client / other", _cpu),
    ]
    notes: list[str] = []
    for f in [*result["ingest"], *result["fanout"]]:
        if f.get("errors"):
            notes.append(f"fan-out errors on {_where(f)}: " + "; ".join(f["error_samples"][:3]))
        if f["log_problem_count"]:
            notes.append(
                f"the {_where(f)} server logged {f['log_problem_count']} warning/error lines, "
                f"e.g. {f['log_problems'][0]}"
            )
    for f in result["fanout"]:
        if f["achieved_rate"] is not None and f["achieved_rate"] < 0.9 * c["sse_rate"]:
            notes.append(
                f"fan-out {_where(f)}: the writer only managed {f['achieved_rate']:.1f} "
                "events/s (POSTs slower than the interval)"
            )
    if result["skipped"]:
        notes.append("skipped (no PostgreSQL binaries): " + ", ".join(result["skipped"]))
    notes += [
        "hub = hub.app:create_app (API key, validation, event log + bus, audit entry per POST); "
        "bare = Starlette + ONE Event.insert in one write_transaction, no auth/validation/audit; "
        "its fan-out puts each frame on every stream's in-memory queue.",
        "ingest latency = request written -> answer read; fan-out latency = the client reading "
        "the frame - just before the POST was written, per (client, event); server CPU = the "
        "server process's user+system time per event (pg: postmaster + backends).",
        f"PostgreSQL {result['postgresql'] or '(not run)'}: throwaway cluster (fsync off); "
        "SQLite: WAL, synchronous=normal; one server at a time, no task workers; CPU busy "
        f"before the run: {percent(result['busy_before_percent'])}; soft RLIMIT_NOFILE "
        f"{result['nofile']}.",
    ]
    return [
        Table.of(
            f"Event ingest (POST, {c['concurrency']} keep-alive connections, {c['warmup']:g} s "
            f"warm-up + {c['seconds']:g} s)",
            ingest_columns,
            result["ingest"],
        ),
        Table.of(
            f"Event fan-out ({c['sse_clients']} SSE clients, {c['sse_events']} events posted one "
            f"at a time at {c['sse_rate']:g}/s)",
            fan_columns,
            result["fanout"],
            notes,
        ),
    ]
