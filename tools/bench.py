"""Measure the hub's per-request overhead against a bare Starlette + Peewee app.

What it measures
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

Usage: ``python tools/bench.py [--seconds 4] [--warmup 1] [--concurrency 32] [--rounds 1]
[--client auto|wrk|python] [--json]``. Progress goes to stderr; the table (or JSON) to stdout.
Exits non-zero when either server answers anything but 200.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import dataclasses
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
from collections.abc import Iterator
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


def start_server(name: str, app: str, data_dir: Path) -> Server:
    port = free_port()
    log_path = data_dir / f"{name}.log"
    command = [sys.executable, "-m", "uvicorn", app, *UVICORN_FLAGS, "--port", str(port)]
    if name == "bare":
        command += ["--app-dir", str(ROOT / "tools")]
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            command,
            cwd=ROOT,
            env=bench_env(data_dir),
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


async def _python_load(
    port: int, path: str, secret: str, seconds: float, concurrency: int
) -> dict[str, Any]:
    request = (
        f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAuthorization: Bearer {secret}\r\n\r\n"
    ).encode()
    latencies: list[int] = []
    counts = {"non200": 0, "first_bad_status": 0, "socket_errors": 0}
    started = time.perf_counter_ns()
    deadline = started + int(seconds * 1e9)

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
                if status != 200:
                    counts["non200"] += 1
                    counts["first_bad_status"] = counts["first_bad_status"] or status
            if not keep_alive:
                writer.close()
                writer = None
        if writer is not None:
            writer.close()

    await asyncio.gather(*(worker() for _ in range(concurrency)))
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Benchmark the hub against a bare Starlette + Peewee app."
    )
    parser.add_argument("--seconds", type=int, default=4, help="load per figure (default 4)")
    parser.add_argument("--warmup", type=int, default=1, help="warm-up per figure (default 1)")
    parser.add_argument(
        "--concurrency", type=int, default=32, help="open keep-alive connections (default 32)"
    )
    parser.add_argument(
        "--client",
        choices=("auto", "wrk", "python"),
        default="auto",
        help="load generator: wrk when on the PATH (auto), or the built-in asyncio client",
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="repeat every figure, interleaved, and report the median round (default 1)",
    )
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = parser.parse_args(argv)
    if min(args.seconds, args.concurrency, args.rounds) < 1 or args.warmup < 0:
        parser.error("--seconds, --concurrency and --rounds must be >= 1, --warmup >= 0")

    try:
        with terminate_on_sigterm():
            result = measure(args)
    except BenchError as exc:
        log(f"bench failed: {exc}")
        return 1
    except KeyboardInterrupt:
        log("interrupted: servers stopped, temporary data removed")
        return 130

    if args.json:
        print(
            json.dumps(
                {**result, "figures": [f.as_dict() for f in result["figures"]]},
                indent=2,
                ensure_ascii=False,
            )
        )
    else:
        print(render_table(result))

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
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
