"""The task queue's throughput and claim latency: ``python tools/bench.py --only tasks``.

Two measurements in one run (issue #4; the goal: 1,000 tasks/s end to end on one process).

End to end (create -> completed)
    Three configurations: SQLite with one hub process, PostgreSQL with one, and PostgreSQL
    with two hub processes sharing one database; each once per ``--task-workers`` value
    (``AETHER_WORKERS`` per process, default 2 and 8: every value gets its own row, and the
    best per configuration is named under the table). For each row the hub(s) start as their
    own uvicorn processes (``hub.app:create_app``, the flags of the other measurements, rate
    limit 0, an admin token; workers on, default poll interval) on a fresh data folder and,
    for PostgreSQL, a fresh database. Agent ``bench`` (``builtin/echo``: answers at once, no
    tools) is created through the API, 20 warm-up tasks per process run to completion, then
    ``--task-count`` tasks (1,000: at the 50-100 tasks/s measured on the project's 2-core
    machine that keeps a row under ~20 s) are created with ``POST /api/v1/tasks`` by
    ``--task-clients`` (16) concurrent keep-alive connections of a raw asyncio HTTP/1.1
    client; with two processes, half the connections go to each, pulling from one shared
    counter. The workers run while the tasks are being created, as in production.

    Reported per row: the create rate (tasks the API accepted per second: first request
    written -> last 201 read); the end-to-end rate, tasks / (first create written -> the last
    task's ``completed_at``; the server stamps it on the wall clock the client reads, so the
    figure does not depend on the polling interval) and its ratio to 1,000 tasks/s; how many
    tasks were still unfinished when the last create returned (0: the workers kept up with the
    API; most of them: the workers are the limit); create -> completed per task (server
    timestamps) p50/p99; the CPU time per task of the hub process(es) (API and workers
    together) and of PostgreSQL (postmaster + backends), which depends less on what else runs
    on the machine than the rates do; and the CPU share of the hubs, PostgreSQL, this process
    (the client) and everything else over the run (100 = one core). Completion is detected by
    polling ``GET /api/v1/queue`` every 0.1 s until nothing is pending, scheduled, running or
    waiting; then every created id is looked up in the pages of
    ``GET /api/v1/tasks?status=completed``: created but not completed (nor failed) is "lost",
    completed with ``attempts`` > 1 "retried"; non-201 answers, socket errors and failed tasks
    are errors, and make the bench exit non-zero.

Claim latency (in process)
    For SQLite (a fresh file, opened as the hub opens it) and PostgreSQL (a fresh database):
    ``hub.app.build_runtime`` with 0 workers (opens the database, migrates) and agent
    ``bench``; then at each depth of ``--claim-depths`` (100 and 2,000 pending tasks, made
    with ``hub.services.tasks.create`` and held there by queueing two more, untimed, after
    each pair of claims), ``--claims`` (500) claims timed with
    ``hub.services.tasks.claim("w", 30)``, interleaved one for one with the reference: the
    same claim as ONE hand-written statement, ``UPDATE task SET ... WHERE id = (SELECT id
    ... ORDER BY priority, run_at, id LIMIT 1 [FOR UPDATE SKIP LOCKED]) RETURNING ...``, in
    the hub's transaction shape (``BEGIN IMMEDIATE`` on SQLite, ``BEGIN`` on PostgreSQL,
    ``COMMIT``) on the very same driver connection, the row kept as a tuple. The difference is
    Peewee's query building and row conversion plus whatever else the service does around
    the statement. 20 warm-up claims of each kind per depth are not counted. Reported:
    p50/p99 in ms and the hub/raw ratios; the two depths show how a claim's cost grows with
    the queue.

Caveats
    Client, hub(s) and PostgreSQL share one machine (2 cores on this project's runs) and
    compete for CPU, which is why the CPU split is printed; a dedicated server does better.
    The PostgreSQL server is the tests' throwaway cluster (``tests/pgserver.py``: ``fsync=off``,
    ``synchronous_commit=off``), so commits cost less than on a durable server; SQLite runs as
    the hub runs it (WAL, ``synchronous=normal``). Other work on a shared machine makes every
    figure noisy: the CPU busy share before the run and the "other" CPU column say how much.
    There are no timing assertions: the figures and ratios are printed, never checked.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import datetime as dt
import itertools
import json
import os
import secrets
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import bench
from bench import ROOT, BenchError, Server, log, markdown, percentile

GOAL_PER_SECOND = 1000.0
TOKEN = "bench-tasks-" + secrets.token_hex(16)
AGENT = {"id": "bench", "name": "Bench", "model": "builtin/echo"}
WARMUP_PER_PROCESS = 20
CLAIM_WARMUP = 20  # claims of each kind before the timed ones, at each depth
POLL_SECONDS = 0.1
CONFIGURATIONS = (("sqlite", 1), ("postgresql", 1), ("postgresql", 2))
BACKEND_LABELS = {"sqlite": "SQLite", "postgresql": "PostgreSQL"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("tasks (task queue throughput and claim latency)")
    group.add_argument(
        "--task-count", type=int, default=1000, help="tasks per end-to-end figure (1000)"
    )
    group.add_argument(
        "--task-workers",
        type=bench.positive_list,
        default=[2, 8],
        help="AETHER_WORKERS values to try per configuration (default 2,8)",
    )
    group.add_argument(
        "--task-clients",
        type=int,
        default=16,
        help="concurrent keep-alive connections creating tasks (16)",
    )
    group.add_argument(
        "--claim-depths",
        type=bench.positive_list,
        default=[100, 2000],
        help="queue depths (pending tasks, held constant) to time claims at (default 100,2000)",
    )
    group.add_argument(
        "--claims", type=int, default=500, help="timed claims of each kind, hub and raw (500)"
    )


def check_arguments(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    if min(args.task_count, args.task_clients, args.claims) < 1:
        parser.error("--task-count, --task-clients and --claims must be >= 1")


# --- CPU accounting -------------------------------------------------------------------------


def _stat_fields(pid: int) -> list[str] | None:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def tree_cpu(pid: int) -> float | None:
    """CPU seconds of a process, its reaped children and its live children (PostgreSQL: the
    postmaster and its backends); None without /proc."""
    fields = _stat_fields(pid)
    if fields is None:
        return None
    ticks = sum(int(v) for v in fields[11:15])  # utime stime cutime cstime
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            child = _stat_fields(int(entry.name))
            if child is not None and child[1] == str(pid):  # field 4: the parent pid
                ticks += int(child[11]) + int(child[12])
    return ticks / os.sysconf("SC_CLK_TCK")


class CpuMeter:
    """CPU used by the hubs, PostgreSQL, this process and the rest of the machine between
    ``start`` and ``stop``, in percent of one core."""

    def __init__(self, hubs: list[Server], pg_pid: int | None) -> None:
        self.hubs, self.pg_pid = hubs, pg_pid

    def sample(self) -> tuple[Any, ...]:
        hubs = [h.cpu_seconds() for h in self.hubs]
        pg = tree_cpu(self.pg_pid) if self.pg_pid else None
        return time.perf_counter(), hubs, pg, bench.own_cpu(), bench.machine_cpu()

    def start(self) -> None:
        self.before = self.sample()

    def stop(self) -> dict[str, float | None]:
        """CPU seconds (``*_s``) and percent of one core of the hubs, PostgreSQL, the client
        and the rest of the machine (``other``) since ``start``."""
        after = self.sample()
        wall = after[0] - self.before[0]
        out: dict[str, float | None] = {"hubs": None, "postgres": None, "client": None}
        if None not in self.before[1] and None not in after[1]:
            out["hubs_s"] = sum(after[1]) - sum(self.before[1])
            out["hubs"] = 100 * out["hubs_s"] / wall
        if self.before[2] is not None and after[2] is not None:
            out["postgres_s"] = after[2] - self.before[2]
            out["postgres"] = 100 * out["postgres_s"] / wall
        out["client"] = 100 * (after[3] - self.before[3]) / wall
        out["other"] = None
        machine_before, machine_after = self.before[4], after[4]
        if machine_before and machine_after and out["hubs"] is not None:
            busy = 100 * (machine_after[0] - machine_before[0]) / wall
            known = out["hubs"] + (out["postgres"] or 0.0) + out["client"]
            out["other"] = max(0.0, busy - known)
        return out


# --- the create client ------------------------------------------------------------------------


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, dict[bytes, bytes], bytes]:
    """One HTTP/1.1 response: (status, lower-cased headers, body)."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    status = int(lines[0].split(b" ", 2)[1])
    headers: dict[bytes, bytes] = {}
    for line in lines[1:]:
        if line:
            name, _, value = line.partition(b":")
            headers[name.strip().lower()] = value.strip()
    if b"chunked" in headers.get(b"transfer-encoding", b"").lower():
        body = b""
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
            body += (await reader.readexactly(size + 2))[:-2]
            if size == 0:
                break
    elif b"content-length" in headers:
        body = await reader.readexactly(int(headers[b"content-length"]))
    else:
        body = await reader.read()
        headers[b"connection"] = b"close"
    return status, headers, body


async def create_tasks(servers: list[Server], count: int, clients: int, label: str) -> dict:
    """POST ``count`` tasks from ``clients`` keep-alive connections spread over ``servers``
    (one shared counter). Returns the created ids and the timing (wall and perf clocks)."""
    counter = itertools.count()
    ids: list[str] = []
    per_server: collections.Counter[str] = collections.Counter()
    bad: collections.Counter[int] = collections.Counter()
    errors: list[str] = []
    last_ok = [0.0]

    async def client(server: Server) -> None:
        head = (
            f"POST /api/v1/tasks HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\n"
            f"Authorization: Bearer {TOKEN}\r\nContent-Type: application/json\r\n"
        ).encode()
        reader: asyncio.StreamReader | None = None
        writer: asyncio.StreamWriter | None = None
        try:
            while (index := next(counter)) < count:
                body = json.dumps(
                    {"description": f"{label} task {index}", "agent_id": AGENT["id"]}
                ).encode()
                try:
                    if writer is None:
                        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
                    assert reader is not None
                    writer.write(head + b"Content-Length: %d\r\n\r\n" % len(body) + body)
                    status, headers, payload = await _read_response(reader)
                except (OSError, asyncio.IncompleteReadError, ValueError) as exc:
                    errors.append(f"{type(exc).__name__}: {exc}")
                    if writer is not None:
                        writer.close()
                    writer = None
                    continue
                if status == 201:
                    ids.append(headers.get(b"location", b"").decode().rsplit("/", 1)[-1])
                    per_server[server.name] += 1
                    last_ok[0] = time.perf_counter()
                else:
                    bad[status] += 1
                    if len(errors) < 3:
                        errors.append(f"{status}: {payload[:200].decode(errors='replace')}")
                if b"close" in headers.get(b"connection", b"").lower():
                    writer.close()
                    writer = None
        finally:
            if writer is not None:
                writer.close()

    started_wall, started = time.time(), time.perf_counter()
    await asyncio.gather(*(client(servers[n % len(servers)]) for n in range(clients)))
    return {
        "ids": ids,
        "started_wall": started_wall,
        "started": started,
        "create_s": (last_ok[0] or time.perf_counter()) - started,
        "per_server": dict(per_server),
        "non201": sum(bad.values()),
        "errors": errors[:3],
        "socket_errors": sum(1 for e in errors if not e[:3].isdigit()),
    }


# --- end to end -----------------------------------------------------------------------------


def _stamp(value: str | None) -> float | None:
    """An API timestamp (RFC 3339, Z) as a Unix time."""
    if value is None:
        return None
    return dt.datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


def wait_drained(server: Server, timeout: float) -> dict:
    """Poll ``GET /api/v1/queue`` until nothing is pending, scheduled, running or waiting."""
    deadline = time.monotonic() + timeout
    while True:
        queue = bench.api(server, "GET", "/api/v1/queue", TOKEN)
        busy = (queue["depth"]["total"] + queue["scheduled"] + queue["running"]) + queue[
            "waiting_approval"
        ]
        if not busy:
            return queue
        if time.monotonic() > deadline:
            raise BenchError(f"the queue did not drain within {timeout:.0f}s: {queue}")
        time.sleep(POLL_SECONDS)


def listing(server: Server, status: str) -> list[dict]:
    """Every task in ``status``, through the pages of ``GET /api/v1/tasks``."""
    items: list[dict] = []
    cursor = None
    while True:
        path = f"/api/v1/tasks?status={status}&limit=200" + (f"&cursor={cursor}" if cursor else "")
        page = bench.api(server, "GET", path, TOKEN)
        items += page["items"]
        cursor = page["next_cursor"]
        if cursor is None:
            return items


@contextlib.contextmanager
def hubs(
    processes: int, workers: int, database_url: str, label: str, problems: list[str]
) -> Iterator[list[Server]]:
    """``processes`` hubs (uvicorn, one worker process each) on one database; stopped and
    their data folder removed on exit, after the warnings and errors they logged are added to
    ``problems``."""
    data_dir = Path(tempfile.mkdtemp(prefix="aether-bench-tasks-"))
    env = {"AETHER_ADMIN_TOKEN": TOKEN, "AETHER_WORKERS": str(workers)}
    if database_url:
        env["AETHER_DATABASE_URL"] = database_url
    servers: list[Server] = []
    try:
        for n in range(processes):  # one after the other: the first one migrates
            server = bench.start_server(f"hub{n + 1}", "hub.app:create_app", data_dir, env)
            servers.append(server)
            bench.wait_ready(server)
        yield servers
    except Exception:
        for server in servers:
            tail = server.log_tail(15)
            if tail:
                log(f"--- last lines of {label} {server.name}'s output ---\n{tail}")
        raise
    finally:
        for server in servers:
            server.stop()
        for server in servers:
            with contextlib.suppress(OSError):
                text = server.log_path.read_text(errors="replace")
                problems += [line for line in text.splitlines() if _is_problem(line)]
        if problems:
            log(f"{label}: the hubs logged {len(problems)} warning/error lines, e.g.:")
            for line in problems[:5]:
                log(f"    {line[:300]}")
        shutil.rmtree(data_dir, ignore_errors=True)


def _is_problem(line: str) -> bool:
    """A warning or error line of a hub's output (its JSON log, or uvicorn's own)."""
    lowered = line.lower()
    return (
        '"level": "warning"' in lowered
        or '"level": "error"' in lowered
        or '"level": "critical"' in lowered
        or line.startswith(("WARNING", "ERROR", "CRITICAL", "Traceback"))
    )


def run_e2e(
    backend: str,
    processes: int,
    workers: int,
    args: argparse.Namespace,
    database_url: str,
    pg_pid: int | None,
) -> dict:
    plural = "es" if processes > 1 else ""
    label = f"{BACKEND_LABELS[backend]}, {processes} hub process{plural}, {workers} workers each"
    log(f"tasks: {label}: starting")
    problems: list[str] = []
    with hubs(processes, workers, database_url, label, problems) as servers:
        bench.api(servers[0], "POST", "/api/v1/agents", TOKEN, AGENT)
        warm = bench.run_async(
            create_tasks(servers, WARMUP_PER_PROCESS * processes, processes, "warm-up")
        )
        if warm["non201"] or warm["socket_errors"]:
            raise BenchError(f"{label}: the warm-up tasks failed: {warm['errors']}")
        wait_drained(servers[0], 60)
        log(f"tasks: {label}: {args.task_count} tasks from {args.task_clients} connections")
        meter = CpuMeter(servers, pg_pid)
        meter.start()
        run = bench.run_async(create_tasks(servers, args.task_count, args.task_clients, "bench"))
        log(
            f"tasks: {label}: {len(run['ids'])} accepted in {run['create_s']:.2f}s; "
            "waiting for the workers"
        )
        wait_drained(servers[0], max(120.0, args.task_count / 20))
        drained_s = time.perf_counter() - run["started"]
        cpu = meter.stop()
        for server in servers:
            if server.process.poll() is not None:
                raise BenchError(f"{label}: {server.name} died:\n{server.log_tail()}")
        completed = {t["id"]: t for t in listing(servers[-1], "completed")}
        failed = {t["id"] for s in ("failed", "cancelled") for t in listing(servers[-1], s)}
    created = run["ids"]
    done = [completed[i] for i in created if i in completed]
    finish = [_stamp(t["completed_at"]) or 0.0 for t in done]
    end_wall = max(finish, default=run["started_wall"])
    e2e_s = end_wall - run["started_wall"]
    created_end_wall = run["started_wall"] + run["create_s"]
    latency = [
        ((_stamp(t["completed_at"]) or 0.0) - (_stamp(t["created_at"]) or 0.0)) * 1e3 for t in done
    ]
    figure = {
        "backend": backend,
        "processes": processes,
        "workers": workers,
        "tasks": args.task_count,
        "clients": args.task_clients,
        "accepted": len(created),
        "accepted_per_process": run["per_server"],
        "create_s": round(run["create_s"], 3),
        "create_per_s": round(len(created) / run["create_s"], 1) if run["create_s"] else 0.0,
        "e2e_s": round(e2e_s, 3),
        "e2e_per_s": round(len(done) / e2e_s, 1) if e2e_s > 0 else 0.0,
        "drain_detected_s": round(drained_s, 3),
        "goal_ratio": round(len(done) / e2e_s / GOAL_PER_SECOND, 3) if e2e_s > 0 else 0.0,
        "unfinished_when_creation_ended": sum(1 for f in finish if f > created_end_wall),
        "latency_p50_ms": round(percentile(latency, 50), 1),
        "latency_p99_ms": round(percentile(latency, 99), 1),
        "completed": len(done),
        "failed": sum(1 for i in created if i in failed),
        "lost": sum(1 for i in created if i not in completed and i not in failed),
        "retried": sum(1 for t in done if t["attempts"] > 1),
        "non201": run["non201"],
        "socket_errors": run["socket_errors"],
        "errors": run["errors"],
        "cpu_percent": {
            k: None if v is None else round(v, 1) for k, v in cpu.items() if not k.endswith("_s")
        },
        "hub_cpu_ms_per_task": _per_task(cpu.get("hubs_s"), len(done)),
        "postgres_cpu_ms_per_task": _per_task(cpu.get("postgres_s"), len(done)),
        "hub_log_problems": len(problems),
        "hub_log_sample": [line[:300] for line in problems[:3]],
    }
    log(
        f"tasks: {label}: {figure['e2e_per_s']:,.0f} tasks/s end to end, "
        f"{figure['create_per_s']:,.0f} creates/s"
    )
    return figure


def _per_task(seconds: float | None, tasks: int) -> float | None:
    return None if seconds is None or not tasks else round(seconds / tasks * 1e3, 2)


# --- claim latency --------------------------------------------------------------------------

COLUMNS = (
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
    "ORDER BY priority, run_at, id LIMIT 1{lock}) RETURNING " + COLUMNS
)


def raw_claimer(postgres: bool) -> Any:
    """The reference claim: one hand-written statement on Peewee's own driver connection, in
    the transaction shape the hub's ``write_transaction`` uses; returns the row (a tuple) when
    it may run, like ``claim`` (attempts within the limit, no cancel requested)."""
    from db.base import database, utcnow

    sql = RAW_CLAIM.format(
        p="%s" if postgres else "?", lock=" FOR UPDATE SKIP LOCKED" if postgres else ""
    )
    begin = "BEGIN" if postgres else "BEGIN IMMEDIATE"
    names = [c.strip() for c in COLUMNS.split(",")]
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


def measure_claims(backend: str, database_url: str, args: argparse.Namespace) -> list[dict]:
    """Claim latency of ``hub.services.tasks.claim`` against the raw-SQL reference, at each
    queue depth of ``--claim-depths`` (held constant: two tasks are queued, untimed, after
    each pair of claims)."""
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    from db import base
    from hub.app import build_runtime
    from hub.services import agents
    from hub.services import tasks as service
    from hub.settings import Settings

    label = BACKEND_LABELS[backend]
    data_dir = Path(tempfile.mkdtemp(prefix="aether-bench-claim-"))
    figures: list[dict] = []
    made = itertools.count()

    def queue(count: int) -> None:
        for _ in range(count):
            service.create({"description": f"claim {next(made)}", "agent_id": AGENT["id"]})

    try:
        settings = Settings.from_env(
            bench.bench_env(data_dir), workers=0, database_url=database_url
        )
        build_runtime(settings)
        agents.create(AGENT, actor="bench")
        raw = raw_claimer(backend == "postgresql")
        kinds = {
            "hub": lambda: service.claim("w", 30),
            "raw": lambda: raw("w", 30),
        }
        claimed: set[str] = set()
        depth = 0
        for target in sorted(set(args.claim_depths)):
            log(
                f"tasks: claim latency on {label}: {target:,} tasks queued, {args.claims} "
                "claims of each kind, interleaved"
            )
            queue(target - depth)
            depth = target
            timings: dict[str, list[float]] = {name: [] for name in kinds}
            for index in range(CLAIM_WARMUP + args.claims):
                for name, claim in kinds.items():
                    started = time.perf_counter()
                    got = claim()
                    elapsed = time.perf_counter() - started
                    if got is None:
                        raise BenchError(f"{label}: the {name} claim found no task")
                    task_id = got.id if name == "hub" else got[0]
                    if task_id in claimed:
                        raise BenchError(f"{label}: task {task_id} was claimed twice")
                    claimed.add(task_id)
                    if index >= CLAIM_WARMUP:
                        timings[name].append(elapsed * 1e3)
                queue(len(kinds))  # back to `depth` pending tasks
            figure: dict[str, Any] = {"backend": backend, "queued": depth, "claims": args.claims}
            for name, values in timings.items():
                figure[f"{name}_p50_ms"] = round(percentile(values, 50), 4)
                figure[f"{name}_p99_ms"] = round(percentile(values, 99), 4)
                figure[f"{name}_mean_ms"] = round(sum(values) / len(values), 4)
            for p in ("p50", "p99"):
                raw_ms = figure[f"raw_{p}_ms"]
                figure[f"ratio_{p}"] = round(figure[f"hub_{p}_ms"] / raw_ms, 2) if raw_ms else None
            figures.append(figure)
    finally:
        with contextlib.suppress(Exception):
            base.database.close()
        shutil.rmtree(data_dir, ignore_errors=True)
    return figures


# --- the measurement ------------------------------------------------------------------------


def start_postgres() -> Any:
    """The tests' throwaway PostgreSQL server, or None when its binaries are missing."""
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    from tests.pgserver import PgServer, find_pg_bindir

    if find_pg_bindir() is None:
        log(
            "tasks: PostgreSQL binaries not found (tools/ensure_postgres.sh installs them, or "
            "set AETHER_PG_BINDIR): the PostgreSQL figures are skipped"
        )
        return None
    log("tasks: starting a throwaway PostgreSQL server")
    try:
        return PgServer(dbname="bench_tasks").start()
    except RuntimeError as exc:
        raise BenchError(f"the PostgreSQL server did not start: {exc}") from None


def measure_tasks(args: argparse.Namespace) -> dict[str, Any]:
    """End-to-end task throughput per configuration and claim latency per backend."""
    about = bench.machine()
    busy = bench.busy_percent()
    if busy is not None and busy > 20:
        log(f"warning: the machine is {busy:.0f}% busy before the bench starts: noisy figures")
    pg = start_postgres()
    version = None
    e2e: list[dict] = []
    claims: list[dict] = []
    skipped: list[str] = []
    try:
        if pg is not None:
            version = os.path.basename(os.path.dirname(pg.bindir))
        for backend in ("sqlite", "postgresql"):
            if backend == "postgresql" and pg is None:
                skipped.append("claim latency on PostgreSQL")
                continue
            url = pg.create_database("bench_claim") if backend == "postgresql" else ""
            claims += measure_claims(backend, url, args)
            if backend == "postgresql":
                pg.drop_database("bench_claim")
        number = itertools.count()
        for backend, processes in CONFIGURATIONS:
            for workers in args.task_workers:
                if backend == "postgresql" and pg is None:
                    skipped.append(f"PostgreSQL x{processes}, {workers} workers")
                    continue
                name = f"bench_e2e_{next(number)}"
                url = pg.create_database(name) if backend == "postgresql" else ""
                e2e.append(
                    run_e2e(
                        backend,
                        processes,
                        workers,
                        args,
                        url,
                        pg._proc.pid if backend == "postgresql" else None,  # the postmaster
                    )
                )
                if backend == "postgresql":
                    pg.drop_database(name)
    finally:
        if pg is not None:
            pg.stop()
    return {
        "machine": {**about, "busy_before_percent": busy},
        "goal_per_s": GOAL_PER_SECOND,
        "postgresql": version,
        "e2e": e2e,
        "claim": claims,
        "skipped": skipped,
    }


def failed(result: dict[str, Any]) -> bool:
    """True when a figure is not valid: errors, lost or failed tasks (logged)."""
    bad = False
    for f in result["e2e"]:
        problems = {k: f[k] for k in ("non201", "socket_errors", "lost", "failed") if f[k]}
        if problems:
            bad = True
            log(
                f"FAIL: tasks on {BACKEND_LABELS[f['backend']]} x{f['processes']} "
                f"({f['workers']} workers): {problems} {f['errors']}"
            )
    return bad


def render_tasks(result: dict[str, Any]) -> str:
    goal = result["goal_per_s"]

    def cpu(f: dict) -> str:
        c = f["cpu_percent"]
        parts = [c["hubs"], c["postgres"] if f["backend"] == "postgresql" else None]
        parts += [c["client"], c["other"]]
        return " / ".join("-" if v is None else f"{v:.0f}" for v in parts)

    rows: list[tuple[str, ...]] = [
        (
            "configuration",
            "workers / process",
            "create/s (API)",
            "end-to-end tasks/s",
            f"vs goal {goal:,.0f}/s",
            "unfinished when creation ended",
            "create -> completed p50 / p99 ms",
            "CPU ms/task hubs / pg",
            "CPU % hubs / pg / client / other",
            "completed / lost / retried / errors",
        )
    ]
    for f in result["e2e"]:
        rows.append(
            (
                f"{BACKEND_LABELS[f['backend']]}, {f['processes']} hub process"
                + ("es" if f["processes"] > 1 else ""),
                str(f["workers"]),
                f"{f['create_per_s']:,.0f}",
                f"{f['e2e_per_s']:,.0f}",
                f"{f['goal_ratio']:.2f}",
                f"{f['unfinished_when_creation_ended']:,}",
                f"{f['latency_p50_ms']:,.0f} / {f['latency_p99_ms']:,.0f}",
                " / ".join(
                    "-" if v is None else f"{v:.2f}"
                    for v in (
                        f["hub_cpu_ms_per_task"],
                        f["postgres_cpu_ms_per_task"] if f["backend"] == "postgresql" else None,
                    )
                ),
                cpu(f),
                f"{f['completed']:,} / {f['lost']} / {f['retried']} / "
                f"{f['non201'] + f['socket_errors'] + f['failed']}",
            )
        )
    best: dict[tuple[str, int], dict] = {}
    for f in result["e2e"]:
        key = (f["backend"], f["processes"])
        if key not in best or f["e2e_per_s"] > best[key]["e2e_per_s"]:
            best[key] = f
    summary = "; ".join(
        f"{BACKEND_LABELS[b]} x{p}: {f['e2e_per_s']:,.0f}/s with {f['workers']} workers "
        f"({f['goal_ratio']:.2f} of the goal)"
        for (b, p), f in best.items()
    )
    claim_rows: list[tuple[str, ...]] = [
        (
            "backend, tasks queued",
            "hub claim p50 / p99 ms",
            "raw SQL p50 / p99 ms",
            "hub/raw p50",
            "hub/raw p99",
            "hub extra µs p50",
        )
    ]
    for c in result["claim"]:
        claim_rows.append(
            (
                f"{BACKEND_LABELS[c['backend']]}, {c['queued']:,}",
                f"{c['hub_p50_ms']:.3f} / {c['hub_p99_ms']:.3f}",
                f"{c['raw_p50_ms']:.3f} / {c['raw_p99_ms']:.3f}",
                "-" if c["ratio_p50"] is None else f"{c['ratio_p50']:.2f}",
                "-" if c["ratio_p99"] is None else f"{c['ratio_p99']:.2f}",
                f"{(c['hub_p50_ms'] - c['raw_p50_ms']) * 1e3:,.0f}",
            )
        )
    m = result["machine"]
    first = result["e2e"][0] if result["e2e"] else None
    lines = [
        "### Task queue end to end (create -> completed, builtin/echo, no tools)",
        "",
    ]
    if first:
        lines += [
            f"{first['tasks']:,} tasks per row from {first['clients']} keep-alive connections "
            "(split over the processes), workers running meanwhile; 20 warm-up tasks per "
            "process before each row.",
            "",
            *markdown(rows),
            "",
            f"best per configuration: {summary}",
        ]
        logged = sum(f["hub_log_problems"] for f in result["e2e"])
        if logged:
            lines.append(f"the hubs logged {logged} warning/error lines (samples in the JSON)")
    else:
        lines.append("no end-to-end figure")
    lines += [
        "",
        f"### Claim latency (in process, {result['claim'][0]['claims'] if result['claim'] else 0}"
        " claims of each kind, interleaved, queue depth held constant)",
        "",
        *markdown(claim_rows),
        "",
        f"machine: {m['cpu']}, {m['cores']} cores, {m['implementation']} {m['python']}; "
        f"uvicorn on {m['loop']} + {m['http']}, 1 worker process per hub; CPU busy before "
        f"the run: {bench._percent(m['busy_before_percent'])}; client, hubs and PostgreSQL "
        "on the same machine, loopback",
        f"PostgreSQL {result['postgresql'] or '(not run)'}: throwaway cluster of "
        "tests/pgserver.py (fsync=off, synchronous_commit=off: commits cost less than on a "
        "durable server); SQLite: WAL, synchronous=normal, as the hub opens it.",
        "end-to-end = tasks / (first create written -> the last task's completed_at, stamped "
        "by the server on the same clock); create/s = tasks / (first create written -> last "
        "201 read); unfinished when creation ended: 0 means the workers kept up with the API.",
        "CPU ms/task = CPU time of the hub processes (API + workers) and of PostgreSQL over "
        "the run / tasks; CPU % = process CPU time / run wall time (100 = one core): the hub "
        "processes, PostgreSQL (postmaster + backends), this bench (the client), everything "
        "else.",
        "claim: hub = hub.services.tasks.claim (Peewee); raw = the same UPDATE ... RETURNING "
        "written by hand, same transaction shape, same driver connection, row as a tuple; "
        "hub extra = hub p50 - raw p50; one claim at a time, no workers running.",
        "The machine may be shared: other work skews every figure; compare the ratios, "
        "and rerun before quoting.",
    ]
    if result["skipped"]:
        lines.append("skipped (no PostgreSQL binaries): " + ", ".join(result["skipped"]))
    return "\n".join(lines)
