"""``requests``: the hub's per-request overhead against a bare Starlette + Peewee app.

What it measures
    Two routes, each on three servers, side by side in one run:

    * ``GET /health/live`` (no database, no auth);
    * ``GET /api/v1/agents/{agent_id}`` (one Peewee read of the same row of the same SQLite
      file, rendered with ``Agent.to_api()``).

    The *hub* is ``hub.app.create_app`` exactly as served (Connexion routing, policy, request
    validation, edge middleware, access-log/metrics bookkeeping; response validation off, the
    default), authenticated with ``Authorization: Bearer <secret>`` of an admin key made for the
    bench. The *bare* app (``bench.references.bare_app``) is the smallest honest Starlette +
    Peewee equivalent: it opens the database with ``db.base.open_database`` and reads with
    ``db.agents.get``, so the query is the same, but it does **no auth**, no validation, no
    metrics and no logging. The difference is therefore the whole cost of the hub's stack
    (framework + its own policy work: on the agent route that includes the API-key lookup, a
    second indexed read), not of Connexion alone. The bare app receives the same request bytes
    (Authorization header included) and ignores the header. Both ``/health/live`` handlers are
    ``async`` (no I/O, so no thread-pool hop); both agent reads are plain functions run in a
    worker thread. The *thin* app (``bench.references.thin_app``) is the floor: a plain Peewee
    ``get_or_none`` built per call and the same dict encoded with ``orjson`` into a plain
    ``Response``; "hub/bare" is the cost of the hub's HTTP stack, "hub/thin" of everything.

    All servers run as ONE uvicorn worker process each, with identical flags, on a temporary
    data folder migrated and seeded through the project's own code. Only one server is loaded
    at a time; the others idle.

How
    Load comes from ``wrk`` (1 thread, ``--concurrency`` keep-alive connections) when it is on
    the PATH, else from a small asyncio client with raw keep-alive streams (lighter than httpx,
    so it distorts less, but it is still Python and competes harder for CPU). Each figure is a
    short warm-up, then ``--seconds`` of load. Reported per target and route: requests per
    second, p50/p99 latency, non-200 and socket errors, and the server process's CPU time per
    request (user + system, from /proc on Linux), which depends much less than rps on how much
    CPU the client and other processes leave the server. "hub extra µs/req" is
    ``1/hub_rps - 1/bare_rps``: the added time per request of a saturated single worker.

Caveats
    The client and the servers share one machine: the load generator steals CPU from the
    server, so absolute figures understate a dedicated server and the ratio is the number to
    quote. Latency under saturation is mostly queueing (p50 is roughly concurrency / rps).
    Anything else running skews everything: how busy the CPUs were in the second before the
    run, and how much of the machine other processes took while measuring (from /proc/stat,
    minus the server, the bench and wrk), are printed, with a warning when either is high.
    Runs on shared VMs vary, by up to ±20% for the hub even on a quiet machine: quote a
    ``--rounds 3`` run, whose figures are the median round of three interleaved ones.

Fails (exit non-zero) when either server answers anything but 200 or drops connections.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

from bench import harness, references
from bench.harness import AGENT_ID, BenchError, Context, Server, log
from bench.report import Table, num, pair, percent, ratio

NAME = "requests"
ROUTES: dict[str, str] = {
    "live": "/health/live",
    "agent": f"/api/v1/agents/{AGENT_ID}",
}
ROUTE_LABELS: dict[str, str] = {
    "live": "GET /health/live",
    "agent": "GET /api/v1/agents/{id}",
}
TARGETS = ("hub", "bare", "thin")
SMOKE = {"seconds": 1, "warmup": 0, "concurrency": 4, "rounds": 1}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("requests (hub vs bare app)")
    group.add_argument("--seconds", type=int, default=4, help="load per figure (default 4)")
    group.add_argument("--warmup", type=int, default=1, help="warm-up per figure (default 1)")
    group.add_argument(
        "--concurrency", type=int, default=32, help="open keep-alive connections (default 32)"
    )
    group.add_argument(
        "--client",
        choices=("auto", "wrk", "python"),
        default="auto",
        help="load generator: wrk when on the PATH (auto), or the built-in asyncio client",
    )
    group.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="repeat every figure, interleaved, and report the median round (default 1)",
    )


def check_arguments(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    if min(args.seconds, args.concurrency, args.rounds) < 1 or args.warmup < 0:
        parser.error("--seconds, --concurrency and --rounds must be >= 1, --warmup >= 0")


@dataclasses.dataclass
class Figure:
    """One measured (target, route) pair."""

    target: str
    route: str
    requests: int
    seconds: float
    p50_ms: float
    p99_ms: float
    non200: int
    socket_errors: int
    first_bad_status: int
    server_cpu_s: float | None  # None where /proc is missing
    others_percent: float | None  # the machine's CPU used by neither server nor client
    rounds_rps: list[float] = dataclasses.field(default_factory=list)

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    @property
    def cpu_us_per_request(self) -> float | None:
        if self.server_cpu_s is None or not self.requests:
            return None
        return self.server_cpu_s / self.requests * 1e6

    def as_dict(self) -> dict[str, Any]:
        def rounded(value: float | None) -> float | None:
            return None if value is None else round(value, 1)

        return {
            "target": self.target,
            "route_id": self.route,
            "route": ROUTE_LABELS[self.route],
            "path": ROUTES[self.route],
            "requests": self.requests,
            "seconds": round(self.seconds, 3),
            "rps": round(self.rps, 1),
            "p50_ms": round(self.p50_ms, 3),
            "p99_ms": round(self.p99_ms, 3),
            "non200": self.non200,
            "socket_errors": self.socket_errors,
            "first_bad_status": self.first_bad_status or None,
            "server_cpu_us_per_request": rounded(self.cpu_us_per_request),
            "other_processes_cpu_percent": rounded(self.others_percent),
            "rounds_rps": self.rounds_rps,
        }


def median_round(rounds: list[Figure]) -> Figure:
    """The round with the median rps, carrying the errors of every round and all the rps."""
    chosen = sorted(rounds, key=lambda f: f.rps)[len(rounds) // 2]
    return dataclasses.replace(
        chosen,
        non200=sum(f.non200 for f in rounds),
        socket_errors=sum(f.socket_errors for f in rounds),
        first_bad_status=next((f.first_bad_status for f in rounds if f.first_bad_status), 0),
        rounds_rps=[round(f.rps, 1) for f in rounds],
    )


def sanity_check(servers: dict[str, Server], secret: str) -> dict[str, dict[str, int]]:
    """Every route answers 200 on every server with the same JSON; returns body sizes."""
    sizes: dict[str, dict[str, int]] = {}
    for route, path in ROUTES.items():
        bodies = {}
        for target, server in servers.items():
            status, body = harness.fetch(server, path, secret)
            if status != 200:
                text = body[:500].decode(errors="replace")
                raise BenchError(f"{target} answered {status} to GET {path}: {text}")
            bodies[target] = body
            sizes.setdefault(route, {})[target] = len(body)
        for other in TARGETS[1:]:
            if json.loads(bodies["hub"]) != json.loads(bodies[other]):
                log(f"warning: the hub and the {other} app answer GET {path} with different JSON")
    return sizes


def measure(args: argparse.Namespace, ctx: Context) -> dict[str, Any]:
    wrk = shutil.which("wrk") if args.client in ("auto", "wrk") else None
    if args.client == "wrk" and wrk is None:
        raise BenchError("--client wrk: wrk is not on the PATH")
    if wrk:
        client = f"{harness.wrk_version(wrk)}, 1 thread, {args.concurrency} connections"
    else:
        if args.client == "auto":
            log("wrk not found: using the built-in asyncio client (install wrk for lighter load)")
        client = f"asyncio raw keep-alive client, {args.concurrency} connections"

    busy = ctx.busy_before()
    data_dir = Path(tempfile.mkdtemp(prefix="aether-bench-"))
    servers: dict[str, Server] = {}
    try:
        with harness.running([]) as started:
            log(f"requests: preparing {data_dir} (migrations, one agent, one admin key)")
            secret = harness.prepare_data(data_dir)
            servers["hub"] = harness.start_hub("hub", data_dir)
            started.append(servers["hub"])
            servers["bare"] = harness.start_server("bare", references.BARE_APP, data_dir)
            started.append(servers["bare"])
            servers["thin"] = harness.start_server("thin", references.THIN_APP, data_dir)
            started.append(servers["thin"])
            for server in started:
                harness.wait_ready(server)
            sizes = sanity_check(servers, secret)
            script = data_dir / "bench.lua"
            script.write_text(harness.WRK_SCRIPT)

            def drive(server: Server, path: str, seconds: int) -> dict[str, Any]:
                if wrk:
                    url = server.base_url + path
                    return harness.wrk_load(wrk, script, url, secret, seconds, args.concurrency)
                return harness.python_load(server.port, path, secret, seconds, args.concurrency)

            runs: dict[tuple[str, str], list[Figure]] = {}
            for number in range(1, args.rounds + 1):
                for route, path, target in ((r, p, t) for r, p in ROUTES.items() for t in TARGETS):
                    server = servers[target]
                    counter = f" (round {number}/{args.rounds})" if args.rounds > 1 else ""
                    log(
                        f"requests: {target:4} {ROUTE_LABELS[route]}: {args.warmup}s warm-up, "
                        f"{args.seconds}s{counter}"
                    )
                    if args.warmup > 0:
                        drive(server, path, args.warmup)
                    before = (server.cpu_seconds(), harness.machine_cpu(), harness.own_cpu())
                    raw = drive(server, path, args.seconds)
                    after = (server.cpu_seconds(), harness.machine_cpu(), harness.own_cpu())
                    cpu, others = harness.cpu_accounting(before, after)
                    server.check_alive()
                    runs.setdefault((target, route), []).append(
                        Figure(
                            target=target,
                            route=route,
                            requests=int(raw["requests"]),
                            seconds=float(raw["seconds"]),
                            p50_ms=float(raw["p50_ms"]),
                            p99_ms=float(raw["p99_ms"]),
                            non200=int(raw["non200"]),
                            socket_errors=int(raw["socket_errors"]),
                            first_bad_status=int(raw["first_bad_status"]),
                            server_cpu_s=cpu,
                            others_percent=others,
                        )
                    )
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)
    figures = [median_round(runs[(t, r)]).as_dict() for r in ROUTES for t in TARGETS]
    return {
        "busy_before_percent": busy,
        "config": {
            "client": client,
            "seconds": args.seconds,
            "warmup": args.warmup,
            "concurrency": args.concurrency,
            "rounds": args.rounds,
            "server": "uvicorn, 1 worker process each, log level warning, no access log",
            "body_bytes": sizes,
        },
        "figures": figures,
    }


def max_others(figures: list[dict[str, Any]]) -> float | None:
    values = [v for f in figures if (v := f["other_processes_cpu_percent"]) is not None]
    return max(values) if values else None


def failed(result: dict[str, Any]) -> bool:
    """Warn about a busy machine and log failures; True if a server answered non-200."""
    others = max_others(result["figures"])
    if others is not None and others > 10:
        log(
            f"warning: other processes used up to {others:.0f}% of the machine while measuring: "
            "the figures are skewed; run again on a quiet machine"
        )
    bad = [f for f in result["figures"] if f["non200"] or f["socket_errors"]]
    for f in bad:
        log(
            f"FAIL: {f['target']} answered {f['non200']} non-200 responses "
            f"(first: {f['first_bad_status'] or '-'}) and had {f['socket_errors']} socket "
            f"errors on {f['route']}"
        )
    return bool(bad)


def count(result: dict[str, Any]) -> int:
    return sum(1 for f in result["figures"] if f["requests"])


def tables(result: dict[str, Any]) -> list[Table]:
    by = {(f["target"], f["route_id"]): f for f in result["figures"]}
    pairs = [(by[("hub", r)], by[("bare", r)], by[("thin", r)]) for r in ROUTES]

    def extra(hub: dict, bare: dict, _thin: dict) -> str:
        if not hub["rps"] or not bare["rps"]:
            return "-"
        return f"{(1 / hub['rps'] - 1 / bare['rps']) * 1e6:,.0f}"

    columns = [
        ("route", lambda p: p[0]["route"]),
        ("hub rps", lambda p: f"{p[0]['rps']:,.0f}"),
        ("bare rps", lambda p: f"{p[1]['rps']:,.0f}"),
        ("thin rps", lambda p: f"{p[2]['rps']:,.0f}"),
        ("hub/bare", lambda p: num(ratio(p[0]["rps"], p[1]["rps"]))),
        ("hub/thin", lambda p: num(ratio(p[0]["rps"], p[2]["rps"]))),
        ("hub p50 / p99 ms", lambda p: pair(p[0]["p50_ms"], p[0]["p99_ms"])),
        ("bare p50 / p99 ms", lambda p: pair(p[1]["p50_ms"], p[1]["p99_ms"])),
        ("hub extra µs/req", lambda p: extra(*p)),
        (
            "server CPU µs/req hub / bare / thin",
            lambda p: " / ".join(
                "-" if (v := f["server_cpu_us_per_request"]) is None else f"{v:,.0f}" for f in p
            ),
        ),
        (
            "errors hub / bare / thin",
            lambda p: " / ".join(str(f["non200"] + f["socket_errors"]) for f in p),
        ),
    ]
    c = result["config"]
    notes = [
        "NOT VALID: a server answered non-200 or dropped connections (see stderr)."
        if any(f["non200"] or f["socket_errors"] for f in result["figures"])
        else "",
        f"load: {c['client']}, {c['warmup']}s warm-up + {c['seconds']}s per figure"
        + (f", median of {c['rounds']} interleaved rounds" if c["rounds"] > 1 else "")
        + f"; CPU busy before the run: {percent(result['busy_before_percent'])}, other "
        f"processes while measuring: up to {percent(max_others(result['figures']))}.",
        "hub: full stack with API-key auth (Bearer), validation, metrics; bare: Starlette + the "
        "hub's own read (db.agents.get + to_api, stdlib JSON), NO auth or middleware; thin: "
        "Starlette + a plain Peewee get_or_none + orjson, NO auth or middleware. extra µs/req = "
        "1/hub_rps - 1/bare_rps; server CPU = the server process's user+system time per request.",
    ]
    return [Table.of("Requests: hub vs bare Starlette + Peewee", columns, pairs, notes)]
