"""``workflows``: what a workflow adds between its steps, beside the same work as chained tasks.

Configurations: SQLite with one hub process, PostgreSQL with two hub processes sharing one
database (``AETHER_WORKERS=--workflow-workers`` each, default 4; the hubs start as in the
``tasks`` scenario: their own uvicorn processes, fresh data folder and database).

Workflow
    ``echo3``: three ``agent`` steps for agent ``bench`` (``builtin/echo``: answers at once),
    each prompt a template over the input and the previous step's output. ``--workflow-runs``
    runs (200) are started with ``POST /api/v1/workflows/echo3/runs`` by 8 concurrent
    clients (split over the processes), workers running meanwhile.

Chained tasks (the reference: the same work without workflows)
    Three ``builtin/echo`` agents, and two triggers on ``task.completed``: one makes task 2
    of a chain (for ``hop2``) when a task of ``hop1`` completes, the other task 3 (``hop3``)
    when one of ``hop2`` does, each naming the task it follows; ``--workflow-runs`` task 1s
    are created with ``POST /api/v1/tasks``. Each hop goes through the event log and the
    durable event processor, as such chains do.

Reported per configuration and kind: the step overhead, from one step's ``completed_at`` to
the next step's ``started_at`` (server timestamps, millisecond precision), p50 and p99 over
every hop; runs (or chains) per second = runs / (first create sent -> the last run's (or
third task's) ``completed_at``); the ratio workflow/chained of both. A run not completed,
a chain not finished, or an error makes the bench exit non-zero. No timing assertions.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import datetime as dt
import itertools
import time
from typing import Any

from bench import harness
from bench.harness import BACKEND_LABELS, BenchError, Context, Server, log, percentile
from bench.report import Table, num, pair
from bench.tasks import AGENT, TOKEN, hubs, listing

NAME = "workflows"
CONFIGURATIONS = (("sqlite", 1), ("postgresql", 2))
CLIENTS = 8
SMOKE = {"workflow_runs": 6, "workflow_workers": 2, "workflow_latency_runs": 3}
WORKFLOW = {
    "id": "echo3",
    "input_schema": {"type": "object", "required": ["n"]},
    "steps": [
        {"id": "one", "kind": "agent", "agent_id": "bench", "prompt": "one {{ input.n }}"},
        {"id": "two", "kind": "agent", "agent_id": "bench", "prompt": "two {{ input.n }}"},
        {"id": "three", "kind": "agent", "agent_id": "bench", "prompt": "three {{ input.n }}"},
    ],
}


HOPS = ("hop1", "hop2", "hop3")  # one builtin/echo agent per link of a chain


def _triggers() -> list[dict]:
    """Task 2 of a chain when a task of hop1 completes, task 3 when one of hop2 does; each
    new task names the one it follows (``after <task id>``)."""
    return [
        {
            "name": f"chain to {target}",
            "event_type": "task.completed",
            "filter": f'.payload.agent_id == "{source}"',
            "action": {
                "kind": "create_task",
                "agent_id": target,
                "description": "after {{ event.payload.task_id }}",
            },
        }
        for source, target in itertools.pairwise(HOPS)
    ]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("workflows (step overhead beside chained tasks)")
    group.add_argument(
        "--workflow-runs", type=int, default=200, help="runs (and chains) per figure (200)"
    )
    group.add_argument(
        "--workflow-workers", type=int, default=4, help="AETHER_WORKERS per hub process (4)"
    )
    group.add_argument(
        "--workflow-latency-runs",
        type=int,
        default=20,
        help="runs (and chains) timed one at a time for the step overhead (20)",
    )


def check_arguments(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    if min(args.workflow_runs, args.workflow_workers) < 1:
        parser.error("--workflow-runs and --workflow-workers must be >= 1")


def _stamp(value: str | None) -> float:
    if value is None:
        raise BenchError("a finished step has no timestamp")
    return dt.datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


def _post_all(servers: list[Server], requests: list[tuple[str, dict]]) -> float:
    """POST every ``(path, body)``, ``CLIENTS`` at a time over the servers; the wall time the
    first was sent."""
    started = time.time()

    def one(index: int) -> None:
        path, body = requests[index]
        harness.api(servers[index % len(servers)], "POST", path, TOKEN, body)

    with concurrent.futures.ThreadPoolExecutor(CLIENTS) as pool:
        list(pool.map(one, range(len(requests))))
    return started


def _wait(done, what: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not done():
        if time.monotonic() > deadline:
            raise BenchError(f"{what} did not finish within {timeout:.0f}s")
        time.sleep(0.2)


def _runs(server: Server) -> list[dict]:
    items, cursor = [], None
    while True:
        path = "/api/v1/workflow-runs?limit=200" + (f"&cursor={cursor}" if cursor else "")
        page = harness.api(server, "GET", path, TOKEN)
        items += page["items"]
        cursor = page["next_cursor"]
        if cursor is None:
            return items


def _figure(kind: str, gaps: list[float], count: int, started: float, ended: float) -> dict:
    seconds = ended - started
    return {
        "kind": kind,
        "finished": count,
        "gap_p50_ms": round(percentile(gaps, 50), 1) if gaps else None,
        "gap_p99_ms": round(percentile(gaps, 99), 1) if gaps else None,
        "per_s": round(count / seconds, 1) if seconds > 0 else 0.0,
    }


def _run_gaps(server: Server, run_ids: list[str]) -> tuple[list[float], float]:
    """Every step -> next step gap of these runs, and the last completed_at."""
    gaps, ended = [], 0.0
    for run_id in run_ids:
        detail = harness.api(server, "GET", f"/api/v1/workflow-runs/{run_id}", TOKEN)
        if detail["status"] != "completed":
            raise BenchError(f"run {run_id} is {detail['status']}")
        for before, nxt in itertools.pairwise(detail["steps"]):
            gaps.append((_stamp(nxt["started_at"]) - _stamp(before["completed_at"])) * 1e3)
        ended = max(ended, _stamp(detail["completed_at"]))
    return gaps, ended


def _chains(server: Server, firsts: set[str] | None = None) -> tuple[list[float], float, int]:
    """The gaps between the tasks of each finished chain (those starting at ``firsts``, or
    all), the last completed_at, and how many chains."""
    done = listing(server, "completed")
    after = {t["description"].removeprefix("after "): t for t in done if t["agent_id"] != HOPS[0]}
    gaps, ended, chains = [], 0.0, 0
    for first_task in (t for t in done if t["agent_id"] == HOPS[0]):
        if firsts is not None and first_task["id"] not in firsts:
            continue
        chain = [first_task]
        while len(chain) < len(HOPS) and chain[-1]["id"] in after:
            chain.append(after[chain[-1]["id"]])
        if len(chain) < len(HOPS):
            raise BenchError(f"chain {first_task['description']!r} is missing a task")
        for before, nxt in itertools.pairwise(chain):
            gaps.append((_stamp(nxt["started_at"]) - _stamp(before["completed_at"])) * 1e3)
        ended = max(ended, _stamp(chain[-1]["completed_at"]))
        chains += 1
    return gaps, ended, chains


def _hop3_done(server: Server) -> int:
    return sum(1 for t in listing(server, "completed") if t["agent_id"] == HOPS[-1])


def run_one(backend: str, processes: int, args: argparse.Namespace, url: str) -> dict:
    label = f"{BACKEND_LABELS[backend]} x{processes}"
    problems: list[str] = []
    count, alone = args.workflow_runs, args.workflow_latency_runs
    with hubs(processes, args.workflow_workers, url, label, problems) as servers:
        first = servers[0]
        harness.api(first, "POST", "/api/v1/agents", TOKEN, AGENT)
        for hop in HOPS:
            harness.api(first, "POST", "/api/v1/agents", TOKEN, {**AGENT, "id": hop})
        harness.api(first, "POST", "/api/v1/workflows", TOKEN, WORKFLOW)
        for trigger in _triggers():
            harness.api(first, "POST", "/api/v1/triggers", TOKEN, trigger)

        # Step overhead: one run (one chain) at a time, nothing else queued.
        log(f"workflows: {label}: {alone} runs one at a time, then {alone} chains")
        ids = []
        for n in range(alone):
            run = harness.api(
                servers[n % len(servers)],
                "POST",
                "/api/v1/workflows/echo3/runs",
                TOKEN,
                {"input": {"n": n}},
            )
            path = f"/api/v1/workflow-runs/{run['id']}"
            _wait(
                lambda p=path: harness.api(first, "GET", p, TOKEN)["status"] != "running",
                f"{label}: run {n}",
                60,
            )
            ids.append(run["id"])
        workflow_gaps, _ = _run_gaps(first, ids)
        firsts = set()
        for n in range(alone):
            task = harness.api(
                servers[n % len(servers)],
                "POST",
                "/api/v1/tasks",
                TOKEN,
                {"agent_id": HOPS[0], "description": f"alone {n}"},
            )
            firsts.add(task["id"])
            _wait(lambda n=n: _hop3_done(first) >= n + 1, f"{label}: chain {n}", 60)
        chain_gaps, _, _ = _chains(first, firsts)

        # Throughput: ``count`` at once, workers running meanwhile.
        log(f"workflows: {label}: {count} runs of echo3 at once")
        started = _post_all(
            servers, [("/api/v1/workflows/echo3/runs", {"input": {"n": n}}) for n in range(count)]
        )

        def runs_done() -> bool:
            page = harness.api(first, "GET", "/api/v1/workflow-runs?status=running&limit=1", TOKEN)
            return not page["items"]

        _wait(runs_done, f"{label}: {count} workflow runs", max(120.0, count / 5))
        runs = [r for r in _runs(servers[-1]) if r["id"] not in set(ids)]
        bad = [r["id"] for r in runs if r["status"] != "completed"]
        if len(runs) != count or bad:
            raise BenchError(f"{label}: {len(runs)} runs, not completed: {bad[:5]}")
        loaded_gaps, ended = _run_gaps(first, [r["id"] for r in runs])
        workflow = _figure("workflow", workflow_gaps, len(runs), started, ended)
        workflow["loaded_gap_p50_ms"] = round(percentile(loaded_gaps, 50), 1)

        log(f"workflows: {label}: {count} chains of three tasks at once (two triggers)")
        started = _post_all(
            servers,
            [
                ("/api/v1/tasks", {"agent_id": HOPS[0], "description": f"chain {n}"})
                for n in range(count)
            ],
        )
        _wait(
            lambda: _hop3_done(first) >= count + alone,
            f"{label}: {count} chains",
            max(120.0, count / 5),
        )
        loaded_chain_gaps, ended, chains = _chains(first)
        chained = _figure("chained tasks", chain_gaps, chains - alone, started, ended)
        chained["loaded_gap_p50_ms"] = round(percentile(loaded_chain_gaps, 50), 1)
        for server in servers:
            server.check_alive(label)
    return {
        "backend": backend,
        "processes": processes,
        "workers": args.workflow_workers,
        "runs": count,
        "alone": alone,
        "workflow": workflow,
        "chained": chained,
        "gap_ratio_p50": _ratio(workflow["gap_p50_ms"], chained["gap_p50_ms"]),
        "rate_ratio": _ratio(workflow["per_s"], chained["per_s"]),
        "hub_log_problems": len(problems),
    }


def _ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 2) if a is not None and b else None


def measure(args: argparse.Namespace, ctx: Context) -> dict[str, Any]:
    busy = ctx.busy_before()
    pg = ctx.postgres.get(NAME)
    figures, skipped = [], []
    for number, (backend, processes) in enumerate(CONFIGURATIONS):
        if backend == "postgresql" and pg is None:
            skipped.append(f"PostgreSQL x{processes}")
            continue
        name = f"bench_workflows_{number}"
        url = pg.create_database(name) if backend == "postgresql" else ""
        try:
            figures.append(run_one(backend, processes, args, url))
        finally:
            if backend == "postgresql":
                with contextlib.suppress(RuntimeError):
                    pg.drop_database(name)
    return {"busy_before_percent": busy, "figures": figures, "skipped": skipped}


def failed(_result: dict[str, Any]) -> bool:
    return False  # an unfinished run or chain raises BenchError during the measurement


def count(result: dict[str, Any]) -> int:
    return len(result["figures"])


def tables(result: dict[str, Any]) -> list[Table]:
    rows = []
    for f in result["figures"]:
        for kind in ("workflow", "chained"):
            rows.append({**f[kind], "config": f, "kind_key": kind})
    columns = [
        (
            "configuration",
            lambda r: (
                f"{BACKEND_LABELS[r['config']['backend']]} x{r['config']['processes']}, "
                f"{r['config']['workers']} workers each"
            ),
        ),
        ("what", lambda r: r["kind"]),
        (
            "step -> next step p50 / p99 ms (one at a time)",
            lambda r: pair(r["gap_p50_ms"], r["gap_p99_ms"], ".1f"),
        ),
        ("… p50 under load ms", lambda r: num(r["loaded_gap_p50_ms"], ",.0f")),
        ("runs (chains) / s", lambda r: num(r["per_s"], ",.1f")),
        (
            "workflow / chained: gap p50, rate",
            lambda r: (
                f"{num(r['config']['gap_ratio_p50'])}, {num(r['config']['rate_ratio'])}"
                if r["kind_key"] == "workflow"
                else ""
            ),
        ),
    ]
    notes = [
        "echo3: three agent steps on builtin/echo; chained tasks: the same three echo tasks, "
        "each made by a trigger on the previous one's task.completed.",
        "gap = the next step's started_at minus the previous step's completed_at (server "
        "timestamps, ms precision), over every hop: one at a time (nothing else queued) for "
        "the overhead, and over the throughput round (where it is mostly the wait behind the "
        "other queued steps); rate = runs / (first create sent -> last completed_at) with all "
        "of them created at once.",
    ]
    if result["skipped"]:
        notes.append("skipped (no PostgreSQL binaries): " + ", ".join(result["skipped"]))
    return [Table.of("Workflow step overhead beside chained tasks", columns, rows, notes)]
