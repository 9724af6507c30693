"""``tasks``: the task queue's throughput end to end, and its claim latency.

End to end (create -> completed; the goal: 1,000 tasks/s on one process)
    Three configurations: SQLite with one hub process, PostgreSQL with one, and PostgreSQL
    with two hub processes sharing one database; each once per ``--task-workers`` value
    (``AETHER_WORKERS`` per process, default 2 and 8: every value gets its own row, and the
    best per configuration is named under the table). For each row the hub(s) start as their
    own uvicorn processes (``hub.app:create_app``, the flags of the other measurements, rate
    limit 0, an admin token; workers on, default poll interval) on a fresh data folder and,
    for PostgreSQL, a fresh database. Agent ``bench`` (``builtin/echo``: answers at once, no
    tools) is created through the API, 20 warm-up tasks per process run to completion, then
    ``--task-count`` tasks (1,000) are created with ``POST /api/v1/tasks`` (or, per
    ``--task-batch`` size above 1, ``POST /api/v1/tasks/batch`` with that many tasks per
    request; default sizes 1 and 100, each its own row) by ``--task-clients`` (16) concurrent
    keep-alive connections of a raw asyncio HTTP/1.1 client; with two processes, half the
    connections go to each, pulling from one shared counter. The workers run while the tasks
    are being created, as in production.

    Reported per row: the create rate (tasks the API accepted per second: first request
    written -> last 201 read); the end-to-end rate, tasks / (first create written -> the last
    task's ``completed_at``; the server stamps it on the wall clock the client reads, so the
    figure does not depend on the polling interval) and its ratio to 1,000 tasks/s; how many
    tasks were still unfinished when the last create returned (0: the workers kept up with the
    API); create -> completed per task (server timestamps) p50/p99; the CPU time per task of
    the hub process(es) (API and workers together) and of PostgreSQL (postmaster + backends);
    and the CPU share of the hubs, PostgreSQL, this process (the client) and everything else
    over the run (100 = one core). Completion is detected by polling ``GET /api/v1/queue``
    every 0.1 s until nothing is pending, scheduled, running or waiting; then every created id
    is looked up in the pages of ``GET /api/v1/tasks?status=completed``: created but not
    completed (nor failed) is "lost", completed with ``attempts`` > 1 "retried"; non-201
    answers, socket errors and failed tasks are errors, and make the bench exit non-zero.

Claim latency (in process)
    For SQLite (a fresh file, opened as the hub opens it) and PostgreSQL (a fresh database):
    the hub's runtime with 0 workers (``harness.open_runtime``: opens the database, migrates)
    and agent ``bench``; then at each depth of ``--claim-depths`` (100 and 2,000 pending
    tasks, made with ``hub.services.tasks.create`` and held there by queueing two more,
    untimed, after each pair of claims), ``--claims`` (500) claims timed with
    ``hub.services.tasks.claim("w", 30)``, interleaved one for one with the reference
    (``bench.references.raw_claimer``): the same claim as ONE hand-written ``UPDATE … WHERE
    id = (SELECT … LIMIT 1 [FOR UPDATE SKIP LOCKED]) RETURNING …`` in the hub's transaction
    shape on the very same driver connection, the row kept as a tuple. The difference is
    Peewee's query building and row conversion plus whatever else the service does around the
    statement. 20 warm-up claims of each kind per depth are not counted. Reported: p50/p99 in
    ms and the hub/raw ratios; the two depths show how a claim's cost grows with the queue.

Caveats
    Client, hub(s) and PostgreSQL share one machine and compete for CPU, which is why the CPU
    split is printed. The PostgreSQL server is a throwaway cluster (``fsync=off``,
    ``synchronous_commit=off``), so commits cost less than on a durable server; SQLite runs as
    the hub runs it (WAL, ``synchronous=normal``). There are no timing assertions.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import datetime as dt
import itertools
import json
import secrets
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from bench import harness, references
from bench.harness import BACKEND_LABELS, BenchError, Context, CpuMeter, Server, log, percentile
from bench.report import Table, num, pair, percent

NAME = "tasks"
GOAL_PER_SECOND = 1000.0
TOKEN = "bench-tasks-" + secrets.token_hex(16)
AGENT = {"id": "bench", "name": "Bench", "model": "builtin/echo"}
POLL_SECONDS = 0.1
CONFIGURATIONS = (("sqlite", 1), ("postgresql", 1), ("postgresql", 2))
SMOKE = {
    "task_count": 20,
    "task_workers": [2],
    "task_clients": 4,
    "task_batch": [1, 5],
    "claim_depths": [5],
    "claims": 10,
    "task_warmup": 2,
    "claim_warmup": 2,
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("tasks (task queue throughput and claim latency)")
    group.add_argument(
        "--task-count", type=int, default=1000, help="tasks per end-to-end figure (1000)"
    )
    group.add_argument(
        "--task-workers",
        type=harness.positive_list,
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
        "--task-batch",
        type=harness.positive_list,
        default=[1, 100],
        help="tasks per create request: 1 is POST /tasks, more is POST /tasks/batch (1,100)",
    )
    group.add_argument(
        "--claim-depths",
        type=harness.positive_list,
        default=[100, 2000],
        help="queue depths (pending tasks, held constant) to time claims at (default 100,2000)",
    )
    group.add_argument(
        "--claims", type=int, default=500, help="timed claims of each kind, hub and raw (500)"
    )
    # Warm-ups: tasks per hub process before each row, claims of each kind before each depth.
    parser.set_defaults(task_warmup=20, claim_warmup=20)


def check_arguments(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    if min(args.task_count, args.task_clients, args.claims) < 1:
        parser.error("--task-count, --task-clients and --claims must be >= 1")
    if max(args.task_batch) > 1000:
        parser.error("--task-batch: at most 1000 tasks per request (the contract's limit)")


# --- the create client ------------------------------------------------------------------------


async def create_tasks(
    servers: list[Server], count: int, clients: int, label: str, batch: int = 1
) -> dict:
    """POST ``count`` tasks from ``clients`` keep-alive connections spread over ``servers``
    (one shared counter), one per ``POST /api/v1/tasks`` or, with ``batch`` > 1, that many per
    ``POST /api/v1/tasks/batch``. Returns the created ids and the timing (wall and perf
    clocks)."""
    counter = itertools.count(0, batch)
    path = "/api/v1/tasks" if batch == 1 else "/api/v1/tasks/batch"
    accepted = 201 if batch == 1 else 200
    ids: list[str] = []
    per_server: collections.Counter[str] = collections.Counter()
    bad: collections.Counter[int] = collections.Counter()
    errors: list[str] = []
    last_ok = [0.0]

    async def client(server: Server) -> None:
        head = (
            f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\n"
            f"Authorization: Bearer {TOKEN}\r\nContent-Type: application/json\r\n"
        ).encode()
        reader: asyncio.StreamReader | None = None
        writer: asyncio.StreamWriter | None = None
        try:
            while (first := next(counter)) < count:
                tasks = [
                    {"description": f"{label} task {index}", "agent_id": AGENT["id"]}
                    for index in range(first, min(first + batch, count))
                ]
                body = json.dumps(tasks[0] if batch == 1 else {"tasks": tasks}).encode()
                try:
                    if writer is None:
                        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
                    assert reader is not None
                    writer.write(head + b"Content-Length: %d\r\n\r\n" % len(body) + body)
                    status, headers, payload = await harness.read_response(reader)
                except (OSError, asyncio.IncompleteReadError, ValueError) as exc:
                    errors.append(f"{type(exc).__name__}: {exc}")
                    if writer is not None:
                        writer.close()
                    writer = None
                    continue
                if status == accepted and batch == 1:
                    ids.append(headers.get(b"location", b"").decode().rsplit("/", 1)[-1])
                    per_server[server.name] += 1
                    last_ok[0] = time.perf_counter()
                elif status == accepted:
                    made = [t["id"] for t in json.loads(payload)["items"]]
                    ids.extend(made)
                    per_server[server.name] += len(made)
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
        queue = harness.api(server, "GET", "/api/v1/queue", TOKEN)
        busy = queue["depth"]["total"] + queue["scheduled"] + queue["running"]
        if not busy + queue["waiting_approval"]:
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
        page = harness.api(server, "GET", path, TOKEN)
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
        with harness.running(servers, label):
            for n in range(processes):  # one after the other: the first one migrates
                servers.append(harness.start_hub(f"hub{n + 1}", data_dir, env))
                harness.wait_ready(servers[-1])
            yield servers
    finally:
        for server in servers:
            problems += server.problems()
        if problems:
            log(f"{label}: the hubs logged {len(problems)} warning/error lines, e.g.:")
            for line in problems[:5]:
                log(f"    {line}")
        shutil.rmtree(data_dir, ignore_errors=True)


def run_e2e(
    backend: str,
    processes: int,
    workers: int,
    args: argparse.Namespace,
    database_url: str,
    pg_pid: int | None,
    batch: int = 1,
) -> dict:
    plural = "es" if processes > 1 else ""
    label = f"{BACKEND_LABELS[backend]}, {processes} hub process{plural}, {workers} workers each"
    label += f", {batch} per create" if batch > 1 else ""
    log(f"tasks: {label}: starting")
    problems: list[str] = []
    with hubs(processes, workers, database_url, label, problems) as servers:
        harness.api(servers[0], "POST", "/api/v1/agents", TOKEN, AGENT)
        warm = harness.run_async(
            create_tasks(servers, args.task_warmup * processes, processes, "warm-up")
        )
        if warm["non201"] or warm["socket_errors"]:
            raise BenchError(f"{label}: the warm-up tasks failed: {warm['errors']}")
        wait_drained(servers[0], 60)
        log(f"tasks: {label}: {args.task_count} tasks from {args.task_clients} connections")
        meter = CpuMeter(servers, pg_pid)
        meter.start()
        run = harness.run_async(
            create_tasks(servers, args.task_count, args.task_clients, "bench", batch)
        )
        log(
            f"tasks: {label}: {len(run['ids'])} accepted in {run['create_s']:.2f}s; "
            "waiting for the workers"
        )
        wait_drained(servers[0], max(120.0, args.task_count / 20))
        drained_s = time.perf_counter() - run["started"]
        cpu = meter.stop()
        for server in servers:
            server.check_alive(f"{label}: {server.name}")
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
        "batch": batch,
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
        "cpu_percent": harness.cpu_percent(cpu),
        "hub_cpu_ms_per_task": _per_task(cpu.get("hubs_s"), len(done)),
        "postgres_cpu_ms_per_task": _per_task(cpu.get("postgres_s"), len(done)),
        "hub_log_problems": len(problems),
        "hub_log_sample": problems[:3],
    }
    log(
        f"tasks: {label}: {figure['e2e_per_s']:,.0f} tasks/s end to end, "
        f"{figure['create_per_s']:,.0f} creates/s"
    )
    return figure


def _per_task(seconds: float | None, tasks: int) -> float | None:
    return None if seconds is None or not tasks else round(seconds / tasks * 1e3, 2)


# --- claim latency --------------------------------------------------------------------------


def measure_claims(backend: str, database_url: str, args: argparse.Namespace) -> list[dict]:
    """Claim latency of ``hub.services.tasks.claim`` against the raw-SQL reference, at each
    queue depth of ``--claim-depths`` (held constant: two tasks are queued, untimed, after
    each pair of claims)."""
    from db import base
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
            harness.bench_env(data_dir), workers=0, database_url=database_url
        )
        harness.open_runtime(settings)
        agents.create(AGENT, actor="bench")
        raw = references.raw_claimer(backend == "postgresql")
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
            for index in range(args.claim_warmup + args.claims):
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
                    if index >= args.claim_warmup:
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


def measure(args: argparse.Namespace, ctx: Context) -> dict[str, Any]:
    """End-to-end task throughput per configuration and claim latency per backend."""
    busy = ctx.busy_before()
    pg = ctx.postgres.get(NAME)
    e2e: list[dict] = []
    claims: list[dict] = []
    skipped: list[str] = []
    for backend in ("sqlite", "postgresql"):
        if backend == "postgresql" and pg is None:
            skipped.append("claim latency on PostgreSQL")
            continue
        url = pg.create_database("bench_claim") if backend == "postgresql" else ""
        try:
            claims += measure_claims(backend, url, args)
        finally:
            if backend == "postgresql":
                with contextlib.suppress(RuntimeError):
                    pg.drop_database("bench_claim")
    number = itertools.count()
    for backend, processes in CONFIGURATIONS:
        for workers, batch in itertools.product(args.task_workers, args.task_batch):
            if backend == "postgresql" and pg is None:
                skipped.append(f"PostgreSQL x{processes}, {workers} workers, batch {batch}")
                continue
            name = f"bench_e2e_{next(number)}"
            postgres = backend == "postgresql"
            url = pg.create_database(name) if postgres else ""
            try:
                pid = ctx.postgres.pid if postgres else None  # the postmaster
                e2e.append(run_e2e(backend, processes, workers, args, url, pid, batch))
            finally:
                if postgres:
                    with contextlib.suppress(RuntimeError):
                        pg.drop_database(name)
    return {
        "busy_before_percent": busy,
        "goal_per_s": GOAL_PER_SECOND,
        "postgresql": ctx.postgres.version,
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


def count(result: dict[str, Any]) -> int:
    return sum(1 for f in result["e2e"] if f["completed"]) + len(result["claim"])


def _cpu(f: dict) -> str:
    c = f["cpu_percent"]
    parts = [c["hubs"], c["postgres"] if f["backend"] == "postgresql" else None]
    return " / ".join(num(v, ".0f") for v in [*parts, c["client"], c["other"]])


def tables(result: dict[str, Any]) -> list[Table]:
    goal = result["goal_per_s"]
    e2e_columns = [
        (
            "configuration",
            lambda f: (
                f"{BACKEND_LABELS[f['backend']]}, {f['processes']} hub process"
                + ("es" if f["processes"] > 1 else "")
            ),
        ),
        ("workers / process", lambda f: str(f["workers"])),
        ("tasks / create", lambda f: str(f.get("batch", 1))),
        ("create/s (API)", lambda f: f"{f['create_per_s']:,.0f}"),
        ("end-to-end tasks/s", lambda f: f"{f['e2e_per_s']:,.0f}"),
        (f"vs goal {goal:,.0f}/s", lambda f: f"{f['goal_ratio']:.2f}"),
        ("unfinished when creation ended", lambda f: f"{f['unfinished_when_creation_ended']:,}"),
        (
            "create -> completed p50 / p99 ms",
            lambda f: pair(f["latency_p50_ms"], f["latency_p99_ms"], ",.0f"),
        ),
        (
            "CPU ms/task hubs / pg",
            lambda f: pair(
                f["hub_cpu_ms_per_task"],
                f["postgres_cpu_ms_per_task"] if f["backend"] == "postgresql" else None,
            ),
        ),
        ("CPU % hubs / pg / client / other", _cpu),
        (
            "completed / lost / retried / errors",
            lambda f: (
                f"{f['completed']:,} / {f['lost']} / {f['retried']} / "
                f"{f['non201'] + f['socket_errors'] + f['failed']}"
            ),
        ),
    ]
    best: dict[tuple[str, int, int], dict] = {}
    for f in result["e2e"]:
        key = (f["backend"], f["processes"], f.get("batch", 1))
        if key not in best or f["e2e_per_s"] > best[key]["e2e_per_s"]:
            best[key] = f
    first = result["e2e"][0] if result["e2e"] else None
    e2e_notes = [
        f"{first['tasks']:,} tasks per row from {first['clients']} keep-alive connections "
        "(split over the processes), workers running meanwhile."
        if first
        else "no end-to-end figure",
        "best per configuration: "
        + "; ".join(
            f"{BACKEND_LABELS[b]} x{p}"
            + (f" batched by {n}" if n > 1 else " single creates")
            + f": {f['e2e_per_s']:,.0f}/s with {f['workers']} workers "
            f"({f['goal_ratio']:.2f} of the goal)"
            for (b, p, n), f in best.items()
        )
        if best
        else "",
        "end-to-end = tasks / (first create written -> the last task's completed_at, stamped by "
        "the server); create/s = tasks / (first create written -> last accepted answer read); "
        "CPU ms/task = CPU time of the hub processes (API + workers) and of PostgreSQL over the "
        "run / tasks.",
    ]
    logged = sum(f["hub_log_problems"] for f in result["e2e"])
    if logged:
        e2e_notes.append(f"the hubs logged {logged} warning/error lines (samples in the JSON)")
    claim_columns = [
        ("backend, tasks queued", lambda c: f"{BACKEND_LABELS[c['backend']]}, {c['queued']:,}"),
        ("hub claim p50 / p99 ms", lambda c: pair(c["hub_p50_ms"], c["hub_p99_ms"], ".3f")),
        ("raw SQL p50 / p99 ms", lambda c: pair(c["raw_p50_ms"], c["raw_p99_ms"], ".3f")),
        ("hub/raw p50", lambda c: num(c["ratio_p50"])),
        ("hub/raw p99", lambda c: num(c["ratio_p99"])),
        ("hub extra µs p50", lambda c: f"{(c['hub_p50_ms'] - c['raw_p50_ms']) * 1e3:,.0f}"),
    ]
    claims = result["claim"][0]["claims"] if result["claim"] else 0
    claim_notes = [
        "hub = hub.services.tasks.claim (Peewee); raw = the same UPDATE ... RETURNING written by "
        "hand, same transaction shape, same driver connection, row as a tuple; one claim at a "
        "time, no workers running.",
        f"PostgreSQL {result['postgresql'] or '(not run)'}: throwaway cluster (fsync=off, "
        "synchronous_commit=off); SQLite: WAL, synchronous=normal, as the hub opens it; CPU "
        f"busy before the run: {percent(result['busy_before_percent'])}.",
    ]
    if result["skipped"]:
        claim_notes.append("skipped (no PostgreSQL binaries): " + ", ".join(result["skipped"]))
    return [
        Table.of(
            "Task queue end to end (create -> completed, builtin/echo, no tools)",
            e2e_columns,
            result["e2e"],
            e2e_notes,
        ),
        Table.of(
            f"Claim latency (in process, {claims} claims of each kind, interleaved, queue depth "
            "held constant)",
            claim_columns,
            result["claim"],
            claim_notes,
        ),
    ]
