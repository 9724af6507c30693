"""Measure the hub's per-request overhead against a bare Starlette + Peewee app, what it adds
to a token stream, how many concurrent streams it holds, the task queue's throughput,
memory search latency, and the event log's ingest rate and live fan-out latency.

Six measurements, run in this order (``--only NAME``, repeatable, picks some): ``requests``,
``streaming``, ``concurrency``, ``tasks``, ``memory`` and ``events``. Each starts its own servers
on its own temporary data folder and stops them before the next one starts.

What ``requests`` measures
    Two routes, each on two servers, side by side in one run:

    * ``GET /health/live`` (no database, no auth);
    * ``GET /api/v1/agents/{agent_id}`` (one Peewee read of the same row of the same SQLite
      file, rendered with ``Agent.to_api()``).

    The *hub* is ``hub.app.create_app`` exactly as served (Connexion routing, policy, request
    validation, edge middleware, access-log/metrics bookkeeping; response validation off, the
    default), authenticated with ``Authorization: Bearer <secret>`` of an admin key made for the
    bench. The *bare* app (``bare_app`` below) is the smallest honest Starlette + Peewee
    equivalent: it opens the database with ``db.base.open_database`` and reads with
    ``db.agents.get``, so the query is the same, but it does **no auth**, no validation, no
    metrics and no logging. The difference is therefore the whole cost of the hub's stack
    (framework + its own policy work: on the agent route that includes the API-key lookup, a
    second indexed read), not of Connexion alone. The bare app
    receives the same request bytes (Authorization header included) and ignores the header.
    Both ``/health/live`` handlers are ``async`` (no I/O, so no thread-pool hop); both agent
    reads are plain functions run in a worker thread.

    Both servers run as ONE uvicorn worker process each, with identical flags (loopback, a free
    port, ``--log-level warning``, no access log, no proxy headers; uvloop/httptools when
    installed), on a temporary data folder migrated and seeded through the project's own code.
    Only one server is loaded at a time; the other idles.

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
    The client and both servers share one machine (this project's runs have 2 cores): the load
    generator steals CPU from the server, so absolute figures understate a dedicated server and
    the ratio is the number to quote. Latency under saturation is mostly queueing (p50 is roughly
    concurrency / rps). Anything else running (a test suite, another bench) skews everything:
    how busy the CPUs were in the second before the run, and how much of the machine other
    processes took while measuring (from /proc/stat, minus the server, the bench and wrk), are
    printed, with a warning when either is high.
    Runs on shared VMs vary, by up to ±20% for the hub even on a quiet machine (it varies
    between server processes too): quote a ``--rounds 3`` run, whose figures are the median
    round of three interleaved ones.

What ``streaming`` measures
    A fake OpenAI-compatible upstream (``fake_upstream_app`` below, its own uvicorn process,
    same flags) answers ``/v1/chat/completions`` with ``stream: true`` by a role chunk, then
    ``--tokens`` content chunks on a fixed schedule (one every ``--interval-ms``, the first at
    once), a finish chunk, a usage chunk and ``data: [DONE]``; it also serves ``/v1/models``.
    The hub (one uvicorn worker, rate limit 0, an admin key made beforehand) gets it as provider
    ``fake`` (kind ``openai``, through ``PUT /api/v1/providers/fake``) and an agent
    ``bench-stream`` with model ``fake/m``. The same stream is then read ``--runs`` times on
    each of three paths, interleaved and one at a time: (a) directly from the fake, (b) through
    the hub's SSE (``POST /api/v1/sessions/{id}/messages`` with ``stream: true``, one session
    reused sequentially), (c) through the hub's ``/v1/chat/completions`` with model ``fake/m``.
    The client is raw asyncio (uvloop when installed) on one keep-alive HTTP/1.1 connection per
    path; it stamps each token event (``event: token``, or a chunk with non-empty
    ``delta.content``) when its last byte arrives. One warm-up stream per path is not counted.
    Reported per path: time to first token (request written -> first token read) p50/p99,
    the inter-token gap p50/p99, and the token delivery latency p50/p99: the fake writes its
    emission time (CLOCK_MONOTONIC, which every process on the machine shares) into each
    token's text, which the hub relays unchanged, so the client reads, per token, emission ->
    arrival (tokens 1.. only, the first token's belongs to the first-token figure). For the
    hub paths: the ADDED first token (hub p50 - direct p50, goal < 2 ms), the ADDED per-token
    latency (hub delivery p50 and p99 - direct p50 and p99; the goal, < 0.2 ms, is checked on
    the p50), the added gap, and, as a cross-check that needs no timestamps, the per-token
    delay matched by index: for token i >= 1, (its arrival - the stream's first-token arrival)
    minus the mean of the same over the direct runs. That one is aligned on the first token,
    so it only shows delay that grows or varies along the stream; a constant per-token relay
    cost cancels out of it (it goes negative when the first token is relayed slower than the
    rest), which is why the goal is checked on the delivery latency.

What ``concurrency`` measures
    The same fake upstream (``--conc-tokens`` 30 tokens every ``--conc-interval-ms`` 100 ms)
    and hub; sessions made beforehand in bulk, one per stream. For each count K in ``--streams``
    (default 10, 25, 50, 100, 250, 500, 1000; none above ``--max-streams``) the client opens K
    connections at once, each posting a streaming message to its own session, and reads all K
    SSE streams to their end, the whole round bounded to the schedule + ``--slack`` seconds
    (streams still running then count as incomplete). Per K: the fraction of streams completed,
    time to first token p50/max, and the lateness of every token, arrival - (anchor + i x
    interval), p50/p99/max, where the anchor is the stream's earliest schedule-consistent start,
    min over i of (arrival_i - i x interval): the first token's arrival when that is on time
    (the brief definition), but it does not let tokens bunched behind a held-up first token
    look early; plus the CPU share of the hub, the fake and the
    client (this process) during the round. A K "holds" when every stream completes and the p99
    lateness is under ``--lateness-ms`` (100); once one K fails the larger ones are skipped
    (``--keep-going`` tries them). After each round the bench waits until the hub is idle
    (generations outlive their clients). Last, the largest K is read directly from the fake: if
    that misses the goal, the fake or the client, not the hub, is the bottleneck. The soft
    RLIMIT_NOFILE is raised (up to the hard limit) before the servers start, which inherit it.
    Everything on loopback; every process is stopped at the end.

What ``tasks`` measures
    End-to-end tasks per second (create -> completed, ``builtin/echo``, no tools) on SQLite
    with one hub process and on PostgreSQL with one and two, against the 1,000 tasks/s goal,
    and the queue's claim latency against the same claim as one hand-written SQL statement;
    ``tools/bench_tasks.py`` says how (``--task-count``, ``--task-workers``,
    ``--task-clients``, ``--claim-depths``, ``--claims``). PostgreSQL figures need the server
    binaries (``tools/ensure_postgres.sh``); without them they are skipped.

What ``memory`` measures
    Keyword search (``POST /api/v1/memories/search``) p50/p99 over 10,000 and 100,000
    synthetic memories (``--memory-sizes``) on SQLite and PostgreSQL, one query at a time over
    HTTP, next to the same call in process and the same SQL on a raw driver connection, with
    the hub/raw ratios and the issue #5 goal (p99 < 15 ms at 100,000 on SQLite);
    ``tools/bench_memory.py`` says how (``--memory-backends``, ``--memory-queries``,
    ``--memory-budget``). PostgreSQL figures need its binaries, as for ``tasks``.

What ``events`` measures
    Events ingested per second through ``POST /api/v1/events`` (``--events-concurrency``
    keep-alive connections for ``--events-seconds``), and the latency from an event's write to
    its arrival at ``--sse-clients`` (100) concurrent SSE clients of
    ``GET /api/v1/events/stream`` (``--sse-events`` posted one at a time at ``--sse-rate``
    per second), each on SQLite and PostgreSQL, side by side with a bare Starlette + Peewee
    app that inserts the same row (and fans it out from in-memory queues), with the hub/bare
    ratios; ``tools/bench_events.py`` says how (``--events-backends``).

Usage: ``python tools/bench.py [--only requests|streaming|concurrency|tasks|memory|events ...]
[--seconds 4] [--warmup 1] [--concurrency 32] [--rounds 1] [--client auto|wrk|python]
[--tokens 50] [--interval-ms 20] [--runs 20] [--streams 10,25,50,100,250,500,1000]
[--max-streams 1000] [--conc-tokens 30] [--conc-interval-ms 100] [--lateness-ms 100]
[--slack 10] [--keep-going] [--task-count 1000] [--task-workers 2,8] [--task-clients 16]
[--claim-depths 100,2000] [--claims 500] [--memory-sizes 10000,100000]
[--memory-backends sqlite,postgresql] [--memory-queries 200] [--memory-budget 40]
[--events-seconds 5] [--events-concurrency 16] [--events-backends sqlite,postgresql]
[--sse-clients 100] [--sse-events 200] [--sse-rate 50] [--json]``. Progress goes to stderr; the
tables (markdown, or JSON) to stdout. The default run takes about two and a half minutes, plus
about three for ``tasks``, four for ``memory`` and about one for ``events``.
Exits non-zero when either server of ``requests`` answers anything but 200, a streaming
measurement cannot run (a server fails, a stream breaks), or a task is lost, fails or is
refused, or a memory search answers anything but 200 or other hits than the raw SQL, or an
event POST answers anything but 201, or an SSE client misses, repeats or reorders an event.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import dataclasses
import itertools
import json
import os
import platform
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Awaitable, Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
AGENT_ID = "bench-agent"
ROUTES: dict[str, str] = {
    "live": "/health/live",
    "agent": f"/api/v1/agents/{AGENT_ID}",
}
ROUTE_LABELS: dict[str, str] = {
    "live": "GET /health/live",
    "agent": "GET /api/v1/agents/{id}",
}
TARGETS = ("hub", "bare")
MEASUREMENTS = ("requests", "streaming", "concurrency", "tasks", "memory", "events")
UVICORN_FLAGS = (
    "--factory",
    "--host",
    "127.0.0.1",
    "--log-level",
    "warning",
    "--no-access-log",
    "--no-proxy-headers",
)
WRK_SCRIPT = r"""
local threads = {}
function setup(thread) table.insert(threads, thread) end
function init(args) non200 = 0; first_bad = 0 end
function response(status, headers, body)
  if status ~= 200 then
    non200 = non200 + 1
    if first_bad == 0 then first_bad = status end
  end
end
function done(summary, latency, requests)
  local bad, first = 0, 0
  for _, t in ipairs(threads) do
    bad = bad + t:get("non200")
    if first == 0 then first = t:get("first_bad") end
  end
  local e = summary.errors
  io.write(string.format(
    'BENCH_JSON {"requests":%d,"duration_us":%d,"p50_us":%d,"p99_us":%d,"non200":%d,' ..
    '"first_bad_status":%d,"socket_errors":%d}\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    bad, first, e.connect + e.read + e.write + e.timeout))
end
"""


class BenchError(RuntimeError):
    """The bench cannot give honest numbers (a server failed, answered non-200, …)."""


# --- the bare reference app (imported by uvicorn in its own process) ----------------------


def bare_app() -> Any:
    """The reference: Starlette + Peewee, same two routes, same row, no auth, no middleware.

    ``/health/live`` is ``async`` (no I/O); the agent read is a plain function, which Starlette
    runs in its thread pool, as Peewee's blocking calls must be (the hub's handlers run there
    too).
    """
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    from db import agents
    from db.base import open_database

    data_dir = Path(os.environ["AETHER_DATA_DIR"]).resolve()
    open_database(f"sqlite:///{data_dir / 'aether.db'}")

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


def fake_upstream_app() -> Any:
    """A fake OpenAI-compatible upstream (imported by uvicorn in its own process).

    ``POST /v1/chat/completions`` with ``stream: true`` answers a role chunk, then
    ``BENCH_FAKE_TOKENS`` content chunks on a fixed schedule (token ``i`` at
    ``start + i * BENCH_FAKE_INTERVAL_MS``; the first at once), a finish chunk, a usage chunk
    and ``data: [DONE]``. The schedule is absolute, so a late wake-up does not delay the
    tokens after it. ``GET /v1/models`` lists the one model ``m``.
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
                # The emission time (CLOCK_MONOTONIC, shared by every process on the machine)
                # rides in the text, which the hub relays as is: the client reads the delivery
                # latency of each token from it.
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


# --- results ------------------------------------------------------------------------------


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
    def errors(self) -> int:
        return self.non200 + self.socket_errors

    @property
    def cpu_us_per_request(self) -> float | None:
        if self.server_cpu_s is None or not self.requests:
            return None
        return self.server_cpu_s / self.requests * 1e6

    def as_dict(self) -> dict[str, Any]:
        return {
            "target": self.target,
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
            "server_cpu_us_per_request": _round(self.cpu_us_per_request),
            "other_processes_cpu_percent": _round(self.others_percent),
            "rounds_rps": self.rounds_rps,
        }


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 1)


def _us(value: float | None) -> str:
    return "-" if value is None else f"{value:,.0f}"


def _percent(value: float | None) -> str:
    return "unknown" if value is None else f"{value:.0f}%"


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


# --- machine ------------------------------------------------------------------------------


def machine() -> dict[str, Any]:
    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    try:
        usable = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        usable = os.cpu_count() or 0
    return {
        "cpu": cpu,
        "cores": usable,
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "loop": _installed("uvloop") or "asyncio",
        "http": _installed("httptools") or "h11",
    }


def machine_cpu() -> tuple[float, float] | None:
    """(busy, elapsed) CPU seconds of the whole machine, all cores, since boot, from
    /proc/stat; None without it."""
    try:
        first = Path("/proc/stat").read_text().split("\n", 1)[0].split()
        values = [int(v) for v in first[1:9]]  # user nice system idle iowait irq softirq steal
    except (OSError, ValueError):
        return None
    if len(values) < 5:
        return None
    tick = os.sysconf("SC_CLK_TCK")
    total = sum(values)
    return (total - values[3] - values[4]) / tick, total / tick


def own_cpu() -> float:
    """CPU seconds used by the bench process and its reaped children (wrk runs) so far."""
    me, children = (resource.getrusage(w) for w in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN))
    return me.ru_utime + me.ru_stime + children.ru_utime + children.ru_stime


CpuSample = tuple[float | None, tuple[float, float] | None, float]


def cpu_accounting(before: CpuSample, after: CpuSample) -> tuple[float | None, float | None]:
    """From (server CPU, machine (busy, elapsed), bench + wrk CPU) samples around a figure:
    the server's CPU seconds, and the percent of the machine used by everything else."""
    server_before, machine_before, own_before = before
    server_after, machine_after, own_after = after
    if server_before is None or server_after is None:
        return None, None
    server = server_after - server_before
    if not machine_before or not machine_after or machine_after[1] <= machine_before[1]:
        return server, None
    rest = (machine_after[0] - machine_before[0]) - server - (own_after - own_before)
    return server, max(0.0, 100.0 * rest / (machine_after[1] - machine_before[1]))


def busy_percent(seconds: float = 1.0) -> float | None:
    """How busy the whole machine is right now, in percent of all cores; None without
    /proc. Sampled before the servers start, so it is other processes' load."""
    before = machine_cpu()
    time.sleep(seconds)
    after = machine_cpu()
    if before is None or after is None or after[1] <= before[1]:
        return None
    return round(100.0 * (after[0] - before[0]) / (after[1] - before[1]), 1)


def _installed(module: str) -> str | None:
    try:
        imported = __import__(module)
    except ImportError:
        return None
    return f"{module} {getattr(imported, '__version__', '')}".strip()


def wrk_version(wrk: str) -> str:
    result = subprocess.run([wrk, "--version"], capture_output=True, text=True, check=False)
    first = (result.stdout or result.stderr).splitlines()
    return first[0].split(" [")[0] if first else "wrk"


# --- setup: data folder, servers ----------------------------------------------------------


def bench_env(data_dir: Path) -> dict[str, str]:
    """The caller's environment minus every AETHER_* variable, plus the bench's own."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AETHER_")}
    env.update(
        AETHER_DATA_DIR=str(data_dir),
        AETHER_RATE_LIMIT_PER_MINUTE="0",
        AETHER_LOG_LEVEL="warning",
        PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")])),
    )
    return env


def prepare_data(data_dir: Path) -> str:
    """Migrate the database, create the bench agent and an admin key; return its secret."""
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    from db import base
    from hub.services import agents, keys
    from hub.settings import Settings

    # What `aether migrate` does (and create_app before serving), without importing Connexion.
    base.open_database(Settings.from_env(bench_env(data_dir)).effective_database_url)
    base.migrate()
    agents.create(
        {
            "id": AGENT_ID,
            "name": "Bench agent",
            "description": "Read by tools/bench.py.",
            "role": "assistant",
            "model": "builtin/echo",
            "system_prompt": "You are a helpful assistant.",
            "capabilities": ["chat"],
        },
        actor="bench",
    )
    _key, secret = keys.create("bench", "admin", created_by="bench")
    base.database.close()
    return secret


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _child_setup() -> None:
    """Own session (Ctrl-C reaches only the bench, which stops the servers in order), and
    on Linux a SIGTERM when the bench dies without cleaning up."""
    os.setsid()
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


@dataclasses.dataclass
class Server:
    name: str
    port: int
    process: subprocess.Popen[bytes]
    log_path: Path

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def cpu_seconds(self) -> float | None:
        """User + system CPU time of the server process (all its threads) so far; None
        without /proc (not Linux)."""
        try:
            stat = Path(f"/proc/{self.process.pid}/stat").read_text()
        except OSError:
            return None
        fields = stat.rsplit(")", 1)[1].split()  # utime and stime are fields 14 and 15
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def log_tail(self, lines: int = 30) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        return ""

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)  # uvicorn: graceful, runs lifespan exit
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)


def start_server(
    name: str, app: str, data_dir: Path, extra_env: dict[str, str] | None = None
) -> Server:
    port = free_port()
    log_path = data_dir / f"{name}.log"
    command = [sys.executable, "-m", "uvicorn", app, *UVICORN_FLAGS, "--port", str(port)]
    if app.startswith("bench:"):  # the bare app and the fake upstream live in this file
        command += ["--app-dir", str(ROOT / "tools")]
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            command,
            cwd=ROOT,
            env={**bench_env(data_dir), **(extra_env or {})},
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            preexec_fn=_child_setup if os.name == "posix" else None,
        )
    return Server(name, port, process, log_path)


def wait_ready(server: Server, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise BenchError(
                f"the {server.name} server exited with {server.process.returncode}:\n"
                + server.log_tail()
            )
        url = server.base_url + ROUTES["live"]
        with contextlib.suppress(OSError), urllib.request.urlopen(url, timeout=2) as response:
            if response.status == 200:
                return
        time.sleep(0.1)
    raise BenchError(f"the {server.name} server did not answer within {timeout:.0f}s")


def fetch(server: Server, path: str, secret: str) -> tuple[int, bytes]:
    request = urllib.request.Request(
        server.base_url + path, headers={"Authorization": f"Bearer {secret}"}
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def sanity_check(servers: dict[str, Server], secret: str) -> dict[str, dict[str, int]]:
    """Every route answers 200 on both servers with the same JSON; returns body sizes."""
    sizes: dict[str, dict[str, int]] = {}
    for route, path in ROUTES.items():
        bodies = {}
        for target, server in servers.items():
            status, body = fetch(server, path, secret)
            if status != 200:
                text = body[:500].decode(errors="replace")
                raise BenchError(f"{target} answered {status} to GET {path}: {text}")
            bodies[target] = body
            sizes.setdefault(route, {})[target] = len(body)
        if json.loads(bodies["hub"]) != json.loads(bodies["bare"]):
            log(f"warning: the hub and the bare app answer GET {path} with different JSON")
    return sizes


# --- load generators ----------------------------------------------------------------------


def run_wrk(
    wrk: str, script: Path, url: str, secret: str, seconds: int, concurrency: int
) -> dict[str, Any]:
    command = [
        wrk,
        "-t1",
        f"-c{concurrency}",
        f"-d{seconds}s",
        "--timeout",
        "5s",
        "-s",
        str(script),
        "-H",
        f"Authorization: Bearer {secret}",
        url,
    ]
    result = subprocess.run(
        command, capture_output=True, text=True, timeout=seconds + 60, check=False
    )
    for line in result.stdout.splitlines():
        if line.startswith("BENCH_JSON "):
            data: dict[str, Any] = json.loads(line.removeprefix("BENCH_JSON "))
            data["seconds"] = data.pop("duration_us") / 1e6
            data["p50_ms"] = data.pop("p50_us") / 1e3
            data["p99_ms"] = data.pop("p99_us") / 1e3
            return data
    raise BenchError(f"wrk gave no result ({result.returncode}):\n{result.stdout}{result.stderr}")


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, bool]:
    """Read one HTTP/1.1 response; return (status, server keeps the connection)."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    status = int(lines[0].split(b" ", 2)[1])
    length = -1
    chunked = False
    keep_alive = True
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name == b"content-length":
            length = int(value)
        elif name == b"transfer-encoding" and b"chunked" in value.lower():
            chunked = True
        elif name == b"connection" and b"close" in value.lower():
            keep_alive = False
    if chunked:
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
            await reader.readexactly(size + 2)
            if size == 0:
                break
    elif length >= 0:
        await reader.readexactly(length)
    else:
        await reader.read()
        keep_alive = False
    return status, keep_alive


async def keep_alive_load(
    port: int, request: bytes, seconds: float, concurrency: int, expected: int = 200
) -> tuple[list[int], dict[str, int]]:
    """``concurrency`` keep-alive connections write ``request`` back to back for ``seconds``:
    the latencies (ns) of the answers read before the deadline, and the counts of answers
    that were not ``expected`` (``unexpected``, ``first_bad_status``) and of socket errors."""
    latencies: list[int] = []
    counts = {"unexpected": 0, "first_bad_status": 0, "socket_errors": 0}
    deadline = time.perf_counter_ns() + int(seconds * 1e9)

    async def worker() -> None:
        writer: asyncio.StreamWriter | None = None
        reader: asyncio.StreamReader | None = None
        while time.perf_counter_ns() < deadline:
            try:
                if writer is None:
                    reader, writer = await asyncio.open_connection("127.0.0.1", port)
                assert reader is not None
                sent = time.perf_counter_ns()
                writer.write(request)
                status, keep_alive = await _read_response(reader)
                done = time.perf_counter_ns()
            except (OSError, asyncio.IncompleteReadError, ValueError):
                counts["socket_errors"] += 1
                if writer is not None:
                    writer.close()
                writer = None
                continue
            if done <= deadline:
                latencies.append(done - sent)
                if status != expected:
                    counts["unexpected"] += 1
                    counts["first_bad_status"] = counts["first_bad_status"] or status
            if not keep_alive:
                writer.close()
                writer = None
        if writer is not None:
            writer.close()

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return latencies, counts


async def _python_load(
    port: int, path: str, secret: str, seconds: float, concurrency: int
) -> dict[str, Any]:
    request = (
        f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAuthorization: Bearer {secret}\r\n\r\n"
    ).encode()
    latencies, counts = await keep_alive_load(port, request, seconds, concurrency)
    counts["non200"] = counts.pop("unexpected")
    latencies.sort()

    def percentile(p: float) -> float:
        if not latencies:
            return 0.0
        index = min(len(latencies) - 1, max(0, round(p / 100 * len(latencies)) - 1))
        return latencies[index] / 1e6

    return {
        "requests": len(latencies),
        "seconds": seconds,
        "p50_ms": percentile(50),
        "p99_ms": percentile(99),
        **counts,
    }


def run_python(
    port: int, path: str, secret: str, seconds: float, concurrency: int
) -> dict[str, Any]:
    try:
        import uvloop

        return uvloop.run(_python_load(port, path, secret, seconds, concurrency))
    except ImportError:
        return asyncio.run(_python_load(port, path, secret, seconds, concurrency))


# --- streaming: a raw HTTP/1.1 client timing each token ------------------------------------


FAKE_MODEL = "fake/m"
STREAM_AGENT_ID = "bench-stream"
PATH_LABELS: dict[str, str] = {
    "direct": "direct to the fake upstream",
    "sse": "hub SSE /api/v1/sessions/{id}/messages",
    "compat": "hub /v1/chat/completions",
}


@dataclasses.dataclass
class StreamRun:
    """One stream read to its end: when each token event arrived, in seconds after the
    request was written (``sent``: perf_counter at that moment)."""

    sent: float
    arrivals: list[float]
    delivery: list[float] = dataclasses.field(default_factory=list)  # emitted -> read, seconds
    status: int = 0
    done: bool = False
    error: str = ""

    @property
    def ok(self) -> bool:
        return self.status == 200 and self.done and not self.error


def percentile(values: list[float], p: float) -> float:
    """Nearest-rank percentile of ``values`` (0.0 when empty)."""
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(p / 100 * len(ordered)) - 1))]


def stream_request(port: int, path: str, secret: str, body: dict[str, Any]) -> bytes:
    payload = json.dumps(body).encode()
    return (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
        f"Authorization: Bearer {secret}\r\nAccept: text/event-stream\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(payload)}\r\n\r\n"
    ).encode() + payload


def _classify(event: bytes, kind: str) -> str:
    """'token', 'done', 'error' or '' for one SSE event (bytes between blank lines).

    ``kind`` 'sse' is the hub's own framing (``event: token``); 'openai' is chunk ``data:``
    lines, where a token is a chunk with a non-empty ``delta.content`` (the role chunk with
    ``"content":""`` is not one). Byte tests, not JSON parsing, to keep the client light."""
    if kind == "sse":
        if b"event: token" in event:
            return "token"
        if b"event: done" in event:
            return "done"
        if b"event: error" in event:
            return "error"
        return ""
    if event.startswith(b"data: [DONE]"):
        return "done"
    if b'"content":"' in event and b'"content":""' not in event:
        return "token"
    if b'"error"' in event:
        return "error"
    return ""


async def read_stream(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes, kind: str
) -> tuple[StreamRun, bool]:
    """Write ``request`` and read its (chunked) SSE response to the end, stamping each token
    event with the time its last byte arrived. Returns the run and whether the connection can
    be reused."""
    clock = time.perf_counter
    run = StreamRun(sent=clock(), arrivals=[])
    writer.write(request)
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    run.status = int(lines[0].split(b" ", 2)[1])
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        headers[name.strip().lower()] = value.strip().lower()
    keep_alive = b"close" not in headers.get(b"connection", b"")
    if b"chunked" not in headers.get(b"transfer-encoding", b""):
        length = int(headers.get(b"content-length", b"-1"))
        body = await (reader.readexactly(length) if length >= 0 else reader.read())
        run.error = body[:300].decode(errors="replace")
        return run, keep_alive and length >= 0
    buffer = b""
    while True:
        size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
        data = await reader.readexactly(size + 2)
        if size == 0:
            break
        now, now_ns = clock(), time.monotonic_ns()
        buffer += data[:-2]
        while b"\n\n" in buffer:
            event, buffer = buffer.split(b"\n\n", 1)
            what = _classify(event, kind)
            if what == "token":
                run.arrivals.append(now - run.sent)
                at = event.find(b"@")
                if at >= 0:
                    stamp = event[at + 1 : at + 20]
                    digits = len(stamp) - len(stamp.lstrip(b"0123456789"))
                    run.delivery.append((now_ns - int(stamp[:digits] or 0)) / 1e9)
            elif what == "done":
                run.done = True
            elif what == "error" and not run.error:
                run.error = event[:300].decode(errors="replace")
    return run, keep_alive


def run_async(coroutine: Awaitable[Any]) -> Any:
    """Run on uvloop when installed (a lighter client), else asyncio."""

    async def main() -> Any:
        return await coroutine

    try:
        import uvloop
    except ImportError:
        return asyncio.run(main())
    return uvloop.run(main())


def api(server: Server, method: str, path: str, secret: str, body: Any = None) -> Any:
    """One JSON call to ``server``; raises BenchError on anything but 2xx."""
    request = urllib.request.Request(
        server.base_url + path,
        data=None if body is None else json.dumps(body).encode(),
        method=method,
        headers={"Authorization": f"Bearer {secret}", "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            raw = response.read()
    except urllib.error.HTTPError as exc:
        text = exc.read()[:500].decode(errors="replace")
        raise BenchError(f"{method} {path} answered {exc.code}: {text}") from None
    return json.loads(raw) if raw else None


def register_fake(hub: Server, fake: Server, secret: str) -> None:
    """Provider ``fake`` (kind openai) at the fake upstream, and agent ``bench-stream``."""
    api(
        hub,
        "PUT",
        "/api/v1/providers/fake",
        secret,
        {"kind": "openai", "base_url": f"{fake.base_url}/v1", "models": ["m"]},
    )
    api(
        hub,
        "POST",
        "/api/v1/agents",
        secret,
        {"id": STREAM_AGENT_ID, "name": "Bench stream agent", "model": FAKE_MODEL},
    )


def create_sessions(hub: Server, secret: str, count: int) -> list[str]:
    """``count`` sessions of the stream agent (8 requests in flight)."""
    from concurrent.futures import ThreadPoolExecutor

    def one(_index: int) -> str:
        return str(
            api(hub, "POST", "/api/v1/sessions", secret, {"agent_id": STREAM_AGENT_ID})["id"]
        )

    with ThreadPoolExecutor(8) as pool:
        return list(pool.map(one, range(count)))


@contextlib.contextmanager
def fake_and_hub(tokens: int, interval_ms: float) -> Iterator[tuple[Server, Server, str]]:
    """A temporary data folder, the fake upstream and the hub (one uvicorn worker each, rate
    limit 0), provider and agent registered; yields (fake, hub, admin secret), then stops
    both and removes the folder."""
    data_dir = Path(tempfile.mkdtemp(prefix="aether-bench-stream-"))
    servers: list[Server] = []
    try:
        secret = prepare_data(data_dir)
        fake_env = {"BENCH_FAKE_TOKENS": str(tokens), "BENCH_FAKE_INTERVAL_MS": str(interval_ms)}
        servers.append(start_server("fake", "bench:fake_upstream_app", data_dir, fake_env))
        servers.append(start_server("hub", "hub.app:create_app", data_dir))
        for server in servers:
            wait_ready(server)
        fake, hub = servers
        register_fake(hub, fake, secret)
        yield fake, hub, secret
    except Exception:
        for server in servers:
            tail = server.log_tail(15)
            if tail:
                log(f"--- last lines of the {server.name} server's output ---\n{tail}")
        raise
    finally:
        for server in servers:
            server.stop()
        shutil.rmtree(data_dir, ignore_errors=True)


def raise_nofile(wanted: int) -> int:
    """Raise the soft open-files limit towards ``wanted`` (capped by the hard limit); the
    servers started afterwards inherit it. Returns the soft limit now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft != resource.RLIM_INFINITY and soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        soft = target
    return int(soft)


# --- measurement 2: streaming overhead -----------------------------------------------------


def measure_streaming(args: argparse.Namespace) -> dict[str, Any]:
    """Read the same stream R times on each of the three paths, interleaved, one at a time."""
    tokens, interval = args.tokens, args.interval_ms
    log(f"streaming: fake upstream {tokens} tokens every {interval:g} ms, {args.runs} runs/path")
    with fake_and_hub(tokens, interval) as (fake, hub, secret):
        session_id = create_sessions(hub, secret, 1)[0]
        messages = [{"role": "user", "content": "Say something."}]
        requests = {
            "direct": (
                fake.port,
                stream_request(
                    fake.port,
                    "/v1/chat/completions",
                    "none",
                    {
                        "model": "m",
                        "messages": messages,
                        "stream": True,
                        "stream_options": {"include_usage": True},
                    },
                ),
                "openai",
            ),
            "sse": (
                hub.port,
                stream_request(
                    hub.port,
                    f"/api/v1/sessions/{session_id}/messages",
                    secret,
                    {"content": "Say something.", "stream": True},
                ),
                "sse",
            ),
            "compat": (
                hub.port,
                stream_request(
                    hub.port,
                    "/v1/chat/completions",
                    secret,
                    {
                        "model": FAKE_MODEL,
                        "messages": messages,
                        "stream": True,
                        "stream_options": {"include_usage": True},
                    },
                ),
                "openai",
            ),
        }
        bound = tokens * interval / 1000 + 30

        async def drive() -> dict[str, list[StreamRun]]:
            connections: dict[str, tuple[asyncio.StreamReader, asyncio.StreamWriter]] = {}
            runs: dict[str, list[StreamRun]] = {path: [] for path in requests}
            try:
                for index in range(args.runs + 1):  # run 0 is a warm-up, not recorded
                    for path, (port, request, kind) in requests.items():
                        if path not in connections:
                            connections[path] = await asyncio.open_connection("127.0.0.1", port)
                        reader, writer = connections[path]
                        run, keep = await asyncio.wait_for(
                            read_stream(reader, writer, request, kind), bound
                        )
                        if not keep:
                            writer.close()
                            del connections[path]
                        if not run.ok or len(run.arrivals) != tokens:
                            raise BenchError(
                                f"{PATH_LABELS[path]}: status {run.status}, "
                                f"{len(run.arrivals)}/{tokens} tokens, done={run.done} "
                                f"{run.error}"
                            )
                        if index:
                            runs[path].append(run)
                        await asyncio.sleep(0.02)  # let the hub store the turn, free the session
            finally:
                for _reader, writer in connections.values():
                    writer.close()
            return runs

        runs = run_async(drive())
    return {
        "tokens": tokens,
        "interval_ms": interval,
        "runs": args.runs,
        "paths": streaming_figures(runs),
    }


def streaming_figures(runs: dict[str, list[StreamRun]]) -> dict[str, dict[str, float]]:
    """Per path, in ms: first token p50/p99, inter-token gap p50/p99, delivery latency of
    tokens 1.. (upstream emission -> client read) p50/p99, and the per-token delay against the
    direct path matched by index (see the module docstring)."""
    direct = runs["direct"]
    count = min(len(r.arrivals) for r in direct)
    # The direct path's mean arrival of token i after its own first token, over the runs.
    baseline = [
        sum(r.arrivals[i] - r.arrivals[0] for r in direct) / len(direct) for i in range(count)
    ]
    figures: dict[str, dict[str, float]] = {}
    for path, path_runs in runs.items():
        first = [r.arrivals[0] * 1e3 for r in path_runs]
        gaps = [(b - a) * 1e3 for r in path_runs for a, b in itertools.pairwise(r.arrivals)]
        delays = [
            (r.arrivals[i] - r.arrivals[0] - baseline[i]) * 1e3
            for r in path_runs
            for i in range(1, min(count, len(r.arrivals)))
        ]
        delivery = [d * 1e3 for r in path_runs for d in r.delivery[1:]]
        figures[path] = {
            "delivery_p50_ms": percentile(delivery, 50),
            "delivery_p99_ms": percentile(delivery, 99),
            "ttft_p50_ms": percentile(first, 50),
            "ttft_p99_ms": percentile(first, 99),
            "gap_p50_ms": percentile(gaps, 50),
            "gap_p99_ms": percentile(gaps, 99),
            "delay_p50_ms": percentile(delays, 50),
            "delay_p99_ms": percentile(delays, 99),
        }
    return figures


# --- measurement 3: concurrent streams -----------------------------------------------------


async def concurrent_streams(
    port: int, requests: list[bytes], kind: str, bound: float
) -> list[StreamRun]:
    """Open one connection per request, all at once, and read every stream to its end
    (each bounded by ``bound`` seconds; a stream cut short stays incomplete)."""

    async def one(request: bytes) -> StreamRun:
        writer: asyncio.StreamWriter | None = None
        run = StreamRun(sent=time.perf_counter(), arrivals=[])
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            run, _keep = await read_stream(reader, writer, request, kind)
        except (OSError, asyncio.IncompleteReadError, ValueError) as exc:
            run.error = f"{type(exc).__name__}: {exc}"
        finally:
            if writer is not None:
                writer.close()
        return run

    tasks = [asyncio.ensure_future(one(request)) for request in requests]
    done, pending = await asyncio.wait(tasks, timeout=bound)
    for task in pending:
        task.cancel()
    await asyncio.gather(*pending, return_exceptions=True)
    return [t.result() if t in done else StreamRun(0.0, [], error="timed out") for t in tasks]


def concurrency_figure(
    runs: list[StreamRun],
    tokens: int,
    interval_ms: float,
    seconds: float,
    cpu: dict[str, float | None],
) -> dict[str, Any]:
    """Completion and lateness of K streams.

    Lateness of token i = its arrival - (anchor + i * interval), where the anchor is the
    stream's earliest schedule-consistent start, min over i of (arrival_i - i * interval). When
    the first token is on time that is the first token's arrival (the upstream never sends
    early), so this is ``arrival - (first token + i * interval)``; but when the first token is
    itself held up and the tokens behind it then arrive bunched, anchoring on it would make
    them look early (negative lateness) and hide the delay: anchored on the best-served token,
    the held-up ones count as late, and lateness is never negative."""
    complete = [r for r in runs if r.ok and len(r.arrivals) == tokens]
    lateness: list[float] = []
    for run in complete:
        offsets = [arrival * 1e3 - i * interval_ms for i, arrival in enumerate(run.arrivals)]
        anchor = min(offsets)
        lateness += [offset - anchor for offset in offsets]
    first = [r.arrivals[0] * 1e3 for r in complete]
    delivery = [d * 1e3 for r in complete for d in r.delivery]
    errors = sorted({r.error.splitlines()[0][:120] for r in runs if r.error})
    return {
        "streams": len(runs),
        "completed": len(complete),
        "completed_fraction": len(complete) / len(runs) if runs else 0.0,
        "ttft_p50_ms": percentile(first, 50),
        "ttft_max_ms": max(first, default=0.0),
        "late_p50_ms": percentile(lateness, 50),
        "late_p99_ms": percentile(lateness, 99),
        "late_max_ms": max(lateness, default=0.0),
        "delivery_p50_ms": percentile(delivery, 50),
        "delivery_p99_ms": percentile(delivery, 99),
        "seconds": seconds,
        "cpu_percent": cpu,
        "errors": errors[:3],
    }


def measure_concurrency(args: argparse.Namespace) -> dict[str, Any]:
    """K simultaneous hub SSE streams, each on its own session and connection, per K."""
    ks = sorted({k for k in args.streams if k <= args.max_streams}) or [args.max_streams]
    tokens, interval = args.conc_tokens, args.conc_interval_ms
    nofile = raise_nofile(4 * max(ks) + 256)  # client + hub in + hub out + upstream, per stream
    log(f"concurrency: {ks} streams of {tokens} tokens every {interval:g} ms (nofile {nofile})")
    bound = tokens * interval / 1000 + args.slack
    with fake_and_hub(tokens, interval) as (fake, hub, secret):
        log(f"concurrency: creating {max(ks)} sessions")
        sessions = create_sessions(hub, secret, max(ks))

        def hub_request(session_id: str) -> bytes:
            path = f"/api/v1/sessions/{session_id}/messages"
            return stream_request(hub.port, path, secret, {"content": "Go.", "stream": True})

        direct_request = stream_request(
            fake.port,
            "/v1/chat/completions",
            "none",
            {"model": "m", "messages": [{"role": "user", "content": "Go."}], "stream": True},
        )

        def round_(label: str, server: Server, requests: list[bytes], kind: str) -> dict[str, Any]:
            log(f"concurrency: {len(requests)} streams {label}")
            before = (hub.cpu_seconds(), fake.cpu_seconds(), own_cpu())
            started = time.perf_counter()
            runs = run_async(concurrent_streams(server.port, requests, kind, bound))
            seconds = time.perf_counter() - started
            after = (hub.cpu_seconds(), fake.cpu_seconds(), own_cpu())
            cpu: dict[str, float | None] = {}
            for name, b, a in zip(("hub", "fake", "client"), before, after, strict=True):
                cpu[name] = None if a is None or b is None else 100 * (a - b) / seconds
            for server_ in (hub, fake):
                if server_.process.poll() is not None:
                    raise BenchError(f"the {server_.name} server died:\n{server_.log_tail()}")
            # Streams cut at the bound leave the hub working (a generation outlives its
            # client): wait until it is idle, so the next round starts clean.
            wait_idle(hub)
            return concurrency_figure(runs, tokens, interval, seconds, cpu)

        round_("(warm-up through the hub)", hub, [hub_request(sessions[0])], "sse")
        rounds: list[dict[str, Any]] = []
        for k in ks:
            rounds.append(
                round_("through the hub", hub, [hub_request(s) for s in sessions[:k]], "sse")
            )
            if not holds(rounds[-1], args.lateness_ms) and not args.keep_going:
                break  # more streams will not hold either; --keep-going tries them all
        skipped = [k for k in ks if k > rounds[-1]["streams"]]
        direct = round_("direct to the fake upstream", fake, [direct_request] * max(ks), "openai")
    return {
        "tokens": tokens,
        "interval_ms": interval,
        "lateness_goal_ms": args.lateness_ms,
        "bound_s": bound,
        "nofile": nofile,
        "rounds": rounds,
        "skipped": skipped,
        "direct": direct,
    }


def wait_idle(server: Server, below: float = 0.1, timeout: float = 60.0) -> None:
    """Wait until ``server`` uses less than ``below`` of a core over 0.3 s (at most
    ``timeout`` seconds; no wait without /proc)."""
    deadline = time.monotonic() + timeout
    before = server.cpu_seconds()
    while before is not None and time.monotonic() < deadline:
        time.sleep(0.3)
        after = server.cpu_seconds()
        if after is None or after - before < below * 0.3:
            return
        before = after
    if before is not None:
        log(f"warning: the {server.name} server is still busy after {timeout:.0f}s")


def holds(figure: dict[str, Any], goal_ms: float) -> bool:
    return figure["completed"] == figure["streams"] and figure["late_p99_ms"] < goal_ms


# --- the run ------------------------------------------------------------------------------


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


@contextlib.contextmanager
def terminate_on_sigterm() -> Iterator[None]:
    """Turn SIGTERM/SIGHUP into SystemExit, and make SIGINT a KeyboardInterrupt even when the
    bench was started with it ignored (a background job), so the cleanup always runs."""

    def handler(signum: int, _frame: Any) -> None:
        raise SystemExit(128 + signum)

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGTERM, signal.SIGHUP)}
    previous[signal.SIGINT] = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def measure(args: argparse.Namespace) -> dict[str, Any]:
    wrk = shutil.which("wrk") if args.client in ("auto", "wrk") else None
    if args.client == "wrk" and wrk is None:
        raise BenchError("--client wrk: wrk is not on the PATH")
    if wrk:
        client = f"{wrk_version(wrk)}, 1 thread, {args.concurrency} connections"
    else:
        if args.client == "auto":
            log("wrk not found: using the built-in asyncio client (install wrk for lighter load)")
        client = f"asyncio raw keep-alive client, {args.concurrency} connections"

    about = machine()
    busy = busy_percent()
    if busy is not None and busy > 20:
        log(
            f"warning: the machine is {busy:.0f}% busy before the bench starts "
            f"({about['cores']} cores): the figures will be low and noisy"
        )
    data_dir = Path(tempfile.mkdtemp(prefix="aether-bench-"))
    servers: dict[str, Server] = {}
    try:
        log(f"preparing {data_dir} (migrations, one agent, one admin key)")
        secret = prepare_data(data_dir)
        servers["hub"] = start_server("hub", "hub.app:create_app", data_dir)
        servers["bare"] = start_server("bare", "bench:bare_app", data_dir)
        for server in servers.values():
            wait_ready(server)
        sizes = sanity_check(servers, secret)
        script = data_dir / "bench.lua"
        script.write_text(WRK_SCRIPT)

        def drive(server: Server, path: str, seconds: int) -> dict[str, Any]:
            if wrk:
                return run_wrk(
                    wrk, script, server.base_url + path, secret, seconds, args.concurrency
                )
            return run_python(server.port, path, secret, seconds, args.concurrency)

        runs: dict[tuple[str, str], list[Figure]] = {}
        for round_number in range(1, args.rounds + 1):
            for route, path, target in ((r, p, t) for r, p in ROUTES.items() for t in TARGETS):
                server = servers[target]
                counter = f" (round {round_number}/{args.rounds})" if args.rounds > 1 else ""
                log(
                    f"{target:4} {ROUTE_LABELS[route]}: {args.warmup}s warm-up, "
                    f"{args.seconds}s{counter}"
                )
                if args.warmup > 0:
                    drive(server, path, args.warmup)
                before = (server.cpu_seconds(), machine_cpu(), own_cpu())
                raw = drive(server, path, args.seconds)
                after = (server.cpu_seconds(), machine_cpu(), own_cpu())
                cpu, others = cpu_accounting(before, after)
                if server.process.poll() is not None:
                    raise BenchError(f"the {target} server died:\n{server.log_tail()}")
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
        figures = [median_round(runs[(t, r)]) for r in ROUTES for t in TARGETS]
        return {
            "machine": {**about, "busy_before_percent": busy},
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
    except Exception:
        for server in servers.values():
            tail = server.log_tail(15)
            if tail:
                log(f"--- last lines of the {server.name} server's output ---\n{tail}")
        raise
    finally:
        for server in servers.values():
            server.stop()
        shutil.rmtree(data_dir, ignore_errors=True)


def max_others(figures: list[Figure]) -> float | None:
    values = [f.others_percent for f in figures if f.others_percent is not None]
    return max(values) if values else None


def render_table(result: dict[str, Any]) -> str:
    figures: dict[tuple[str, str], Figure] = {(f.target, f.route): f for f in result["figures"]}
    header = (
        "route",
        "hub rps",
        "bare rps",
        "hub/bare",
        "hub p50/p99 ms",
        "bare p50/p99 ms",
        "hub extra µs/req",
        "server CPU µs/req hub/bare",
        "errors hub/bare",
    )
    rows = [header]
    for route in ROUTES:
        hub, bare = figures[("hub", route)], figures[("bare", route)]
        extra = (1 / hub.rps - 1 / bare.rps) * 1e6 if hub.rps and bare.rps else 0.0
        rows.append(
            (
                ROUTE_LABELS[route],
                f"{hub.rps:,.0f}",
                f"{bare.rps:,.0f}",
                f"{hub.rps / bare.rps:.2f}" if bare.rps else "-",
                f"{hub.p50_ms:.2f} / {hub.p99_ms:.2f}",
                f"{bare.p50_ms:.2f} / {bare.p99_ms:.2f}",
                f"{extra:,.0f}",
                f"{_us(hub.cpu_us_per_request)} / {_us(bare.cpu_us_per_request)}",
                f"{hub.errors} / {bare.errors}",
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = []
    for index, row in enumerate(rows):
        cells = [
            cell.ljust(width) if column == 0 else cell.rjust(width)
            for column, (cell, width) in enumerate(zip(row, widths, strict=True))
        ]
        lines.append("| " + " | ".join(cells) + " |")
        if index == 0:
            lines.append("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    if any(f.errors for f in result["figures"]):
        lines += ["", "NOT VALID: a server answered non-200 or dropped connections (see stderr)."]
    m, c = result["machine"], result["config"]
    lines += [
        "",
        f"machine: {m['cpu']}, {m['cores']} cores, {m['implementation']} {m['python']}; "
        f"uvicorn on {m['loop']} + {m['http']}, 1 worker each; "
        f"CPU busy before the run: {_percent(m['busy_before_percent'])}; other processes while "
        f"measuring: up to {_percent(max_others(result['figures']))} of the machine",
        f"load: {c['client']}, {c['warmup']}s warm-up + {c['seconds']}s per figure"
        + (f", median of {c['rounds']} interleaved rounds" if c["rounds"] > 1 else "")
        + ", loopback, client and servers on the same machine",
        "hub: full stack with API-key auth (Bearer), validation, metrics; "
        "bare: Starlette + the same Peewee read, NO auth or middleware.",
        "extra µs/req = 1/hub_rps - 1/bare_rps; server CPU = the server process's user+system "
        "time per request.",
    ]
    return "\n".join(lines)


def markdown(rows: list[tuple[str, ...]]) -> list[str]:
    """A markdown table: the first row is the header; the first column left-aligned."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = []
    for index, row in enumerate(rows):
        cells = [
            cell.ljust(width) if column == 0 else cell.rjust(width)
            for column, (cell, width) in enumerate(zip(row, widths, strict=True))
        ]
        lines.append("| " + " | ".join(cells) + " |")
        if index == 0:
            lines.append("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return lines


def machine_line(m: dict[str, Any]) -> str:
    return (
        f"machine: {m['cpu']}, {m['cores']} cores, {m['implementation']} {m['python']}; "
        f"uvicorn on {m['loop']} + {m['http']}, 1 worker each; client, hub and fake upstream "
        "on the same machine, loopback"
    )


def render_streaming(result: dict[str, Any], about: dict[str, Any]) -> str:
    paths = result["paths"]
    rows: list[tuple[str, ...]] = [
        (
            "path",
            "first token p50 / p99 ms",
            "token delivery p50 / p99 ms",
            "inter-token gap p50 / p99 ms",
            "token delay vs direct p50 / p99 ms",
        )
    ]
    for path, f in paths.items():
        rows.append(
            (
                PATH_LABELS[path],
                f"{f['ttft_p50_ms']:.2f} / {f['ttft_p99_ms']:.2f}",
                f"{f['delivery_p50_ms']:.3f} / {f['delivery_p99_ms']:.3f}",
                f"{f['gap_p50_ms']:.3f} / {f['gap_p99_ms']:.3f}",
                f"{f['delay_p50_ms']:.3f} / {f['delay_p99_ms']:.3f}",
            )
        )
    direct = paths["direct"]
    added: list[tuple[str, ...]] = [
        (
            "hub path",
            "added first token ms (goal < 2)",
            "added per-token latency p50 / p99 ms (goal < 0.2)",
            "added gap p50 / p99 ms",
            "added index-matched delay p50 / p99 ms",
        )
    ]
    for path in ("sse", "compat"):
        f = paths[path]
        ttft = f["ttft_p50_ms"] - direct["ttft_p50_ms"]
        token = f["delivery_p50_ms"] - direct["delivery_p50_ms"]
        token99 = f["delivery_p99_ms"] - direct["delivery_p99_ms"]
        added.append(
            (
                PATH_LABELS[path],
                f"{ttft:+.2f} {'ok' if ttft < 2 else 'OVER'}",
                f"{token:+.3f} / {token99:+.3f} {'ok' if token < 0.2 else 'OVER'}",
                f"{f['gap_p50_ms'] - direct['gap_p50_ms']:+.3f} / "
                f"{f['gap_p99_ms'] - direct['gap_p99_ms']:+.3f}",
                f"{f['delay_p50_ms'] - direct['delay_p50_ms']:+.3f} / "
                f"{f['delay_p99_ms'] - direct['delay_p99_ms']:+.3f}",
            )
        )
    return "\n".join(
        [
            f"### Streaming overhead ({result['tokens']} tokens every {result['interval_ms']:g} ms,"
            f" {result['runs']} runs per path, sequential, one keep-alive connection per path)",
            "",
            *markdown(rows),
            "",
            *markdown(added),
            "",
            machine_line(about),
            "first token = request written -> first token event read (the hub SSE path includes "
            "planning and storing the turn); gap = between consecutive tokens of one stream.",
            "token delivery = for tokens i >= 1, the fake's emission time (CLOCK_MONOTONIC, sent "
            "in the token text) -> the client reading the event; added per-token latency = hub "
            "percentile - direct percentile of it (what the goal is checked against).",
            "token delay vs direct = for token i >= 1: (its arrival - the stream's first token "
            "arrival) - the same for token i on the direct path, averaged over the direct runs "
            "(index-matched; negative when the hub relays the first token slower than the rest).",
            "added = hub percentile - direct percentile.",
        ]
    )


def render_concurrency(result: dict[str, Any], about: dict[str, Any]) -> str:
    goal = result["lateness_goal_ms"]

    def row(label: str, f: dict[str, Any]) -> tuple[str, ...]:
        cpu = f["cpu_percent"]
        return (
            label,
            f"{f['completed']}/{f['streams']} ({100 * f['completed_fraction']:.0f}%)",
            f"{f['ttft_p50_ms']:,.0f} / {f['ttft_max_ms']:,.0f}",
            f"{f['late_p50_ms']:.1f} / {f['late_p99_ms']:.1f} / {f['late_max_ms']:.1f}",
            f"{f['delivery_p50_ms']:.1f} / {f['delivery_p99_ms']:.1f}",
            " / ".join(
                "-" if cpu[n] is None else f"{cpu[n]:.0f}" for n in ("hub", "fake", "client")
            ),
            "yes" if holds(f, goal) else "NO",
        )

    rows: list[tuple[str, ...]] = [
        (
            "streams",
            "completed",
            "first token p50 / max ms",
            "lateness p50 / p99 / max ms",
            "delivery p50 / p99 ms",
            "CPU % hub / fake / client",
            f"holds (p99 < {goal:g} ms)",
        )
    ]
    rows += [(row(f"{f['streams']} via hub SSE", f)) for f in result["rounds"]]
    direct = result["direct"]
    rows.append(row(f"{direct['streams']} direct to fake", direct))
    held = [f["streams"] for f in result["rounds"] if holds(f, goal)]
    verdict = f"holds {max(held)} streams" if held else "holds none of the tried counts"
    notes = []
    if result["skipped"]:
        notes.append(
            f"not tried (a smaller count already failed; --keep-going tries them): "
            f"{', '.join(map(str, result['skipped']))}"
        )
    for f in [*result["rounds"], direct]:
        if f["errors"]:
            notes.append(f"errors at {f['streams']}: " + "; ".join(f["errors"]))
    if not holds(direct, goal):
        notes.append(
            f"the fake upstream + client alone miss the goal at {direct['streams']} streams: "
            "above that the bench, not the hub, is the bottleneck"
        )
    for f in result["rounds"]:
        busy = [n for n in ("fake", "client") if (f["cpu_percent"][n] or 0) > 90]
        if busy and not holds(f, goal):
            notes.append(f"at {f['streams']} streams the {' and '.join(busy)} used > 90% of a core")
    return "\n".join(
        [
            f"### Concurrent SSE streams ({result['tokens']} tokens every "
            f"{result['interval_ms']:g} ms per stream, one session and connection each, "
            f"each round bounded to {result['bound_s']:g} s)",
            "",
            *markdown(rows),
            "",
            f"result: {verdict} (all complete, p99 lateness < {goal:g} ms); "
            f"soft RLIMIT_NOFILE {result['nofile']}",
            *notes,
            machine_line(about),
            "lateness = arrival of token i - (anchor + i x interval), anchor = the stream's "
            "earliest schedule-consistent start, min_i(arrival_i - i x interval): the first "
            "token's arrival when it is on time, and never negative when tokens arrive bunched "
            "after a held-up one; delivery = upstream emission -> client read, per token; "
            "first token counts from the stream's request being written; "
            "CPU % = process "
            "CPU time / round wall time (100 = one core).",
        ]
    )


def positive_list(text: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"not a comma-separated list of integers: {text}"
        ) from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError("the counts must be >= 1")
    return values


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Benchmark the hub against a bare Starlette + Peewee app, its streaming "
        "overhead against a fake upstream, how many concurrent streams it holds, the task "
        "queue's throughput and claim latency, memory keyword-search latency, and event "
        "ingest rate and SSE fan-out latency."
    )
    parser.add_argument(
        "--only",
        choices=MEASUREMENTS,
        action="append",
        help="run only this measurement (repeatable; default: all, in this order: "
        + ", ".join(MEASUREMENTS)
        + ")",
    )
    requests_ = parser.add_argument_group("requests (hub vs bare app)")
    requests_.add_argument("--seconds", type=int, default=4, help="load per figure (default 4)")
    requests_.add_argument("--warmup", type=int, default=1, help="warm-up per figure (default 1)")
    requests_.add_argument(
        "--concurrency", type=int, default=32, help="open keep-alive connections (default 32)"
    )
    requests_.add_argument(
        "--client",
        choices=("auto", "wrk", "python"),
        default="auto",
        help="load generator: wrk when on the PATH (auto), or the built-in asyncio client",
    )
    requests_.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="repeat every figure, interleaved, and report the median round (default 1)",
    )
    streaming = parser.add_argument_group("streaming overhead")
    streaming.add_argument("--tokens", type=int, default=50, help="tokens per stream (50)")
    streaming.add_argument(
        "--interval-ms", type=float, default=20.0, help="upstream token interval (20 ms)"
    )
    streaming.add_argument("--runs", type=int, default=20, help="streams per path (20)")
    concurrency = parser.add_argument_group("concurrent streams")
    concurrency.add_argument(
        "--streams",
        type=positive_list,
        default=[10, 25, 50, 100, 250, 500, 1000],
        help="simultaneous stream counts to try (default 10,25,50,100,250,500,1000)",
    )
    concurrency.add_argument(
        "--max-streams", type=int, default=1000, help="skip counts above this (default 1000)"
    )
    concurrency.add_argument(
        "--conc-tokens", type=int, default=30, help="tokens per concurrent stream (30)"
    )
    concurrency.add_argument(
        "--conc-interval-ms", type=float, default=100.0, help="their interval (100 ms)"
    )
    concurrency.add_argument(
        "--lateness-ms", type=float, default=100.0, help="p99 lateness goal (100 ms)"
    )
    concurrency.add_argument(
        "--slack", type=float, default=10.0, help="seconds allowed beyond a round's schedule (10)"
    )
    concurrency.add_argument(
        "--keep-going",
        action="store_true",
        help="try every count, even after one failed to hold (by default the larger are skipped)",
    )
    # bench_tasks imports this module as `bench`: let it find this very module (one BenchError).
    sys.modules.setdefault("bench", sys.modules[__name__])
    import bench_events
    import bench_memory
    import bench_tasks

    bench_tasks.add_arguments(parser)
    bench_memory.add_arguments(parser)
    bench_events.add_arguments(parser)
    parser.add_argument("--json", action="store_true", help="print JSON instead of tables")
    args = parser.parse_args(argv)
    bench_tasks.check_arguments(parser, args)
    bench_memory.check_arguments(parser, args)
    bench_events.check_arguments(parser, args)
    if min(args.seconds, args.concurrency, args.rounds) < 1 or args.warmup < 0:
        parser.error("--seconds, --concurrency and --rounds must be >= 1, --warmup >= 0")
    if min(args.tokens, args.runs, args.conc_tokens, args.max_streams) < 2:
        parser.error("--tokens, --runs, --conc-tokens and --max-streams must be >= 2")
    if min(args.interval_ms, args.conc_interval_ms, args.lateness_ms, args.slack) <= 0:
        parser.error("--interval-ms, --conc-interval-ms, --lateness-ms and --slack must be > 0")
    selected = [m for m in MEASUREMENTS if m in (args.only or MEASUREMENTS)]

    output: dict[str, Any] = {}
    tables: list[str] = []
    failed_any = False
    about = machine()
    try:
        with terminate_on_sigterm():
            for name in selected:
                try:
                    if name == "requests":
                        result = measure(args)
                        output.update(
                            {**result, "figures": [f.as_dict() for f in result["figures"]]}
                        )
                        tables.append(render_table(result))
                        failed_any |= report_requests(result)
                    elif name == "streaming":
                        output["streaming"] = measure_streaming(args)
                        tables.append(render_streaming(output["streaming"], about))
                    elif name == "concurrency":
                        output["concurrency"] = measure_concurrency(args)
                        tables.append(render_concurrency(output["concurrency"], about))
                    elif name == "tasks":
                        output["tasks"] = bench_tasks.measure_tasks(args)
                        tables.append(bench_tasks.render_tasks(output["tasks"]))
                        failed_any |= bench_tasks.failed(output["tasks"])
                    elif name == "memory":
                        output["memory"] = bench_memory.measure_memory(args)
                        tables.append(bench_memory.render_memory(output["memory"]))
                        failed_any |= bench_memory.failed(output["memory"])
                    else:
                        output["events"] = bench_events.measure_events(args)
                        tables.append(bench_events.render_events(output["events"]))
                        failed_any |= bench_events.failed(output["events"])
                except BenchError as exc:
                    log(f"bench failed ({name}): {exc}")
                    failed_any = True
    except KeyboardInterrupt:
        log("interrupted: servers stopped, temporary data removed")
        return 130

    output.setdefault("machine", about)
    if args.json:
        print(json.dumps(output, indent=2, ensure_ascii=False))
    else:
        print("\n\n".join(tables))
    return 1 if failed_any else 0


def report_requests(result: dict[str, Any]) -> bool:
    """Warn about a busy machine and log failures of the requests bench; True if any."""
    others = max_others(result["figures"])
    if others is not None and others > 10:
        log(
            f"warning: other processes used up to {others:.0f}% of the machine while measuring: "
            "the figures are skewed; run again on a quiet machine"
        )
    failed = [f for f in result["figures"] if f.errors]
    for figure in failed:
        log(
            f"FAIL: {figure.target} answered {figure.non200} non-200 responses "
            f"(first: {figure.first_bad_status or '-'}) and had {figure.socket_errors} socket "
            f"errors on {ROUTE_LABELS[figure.route]}"
        )
    return bool(failed)


if __name__ == "__main__":
    sys.exit(main())
