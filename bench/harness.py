"""What every scenario shares: the servers, the load client, the CPU meter, the machine.

Servers
    Each server is its own uvicorn process with the same flags (``UVICORN_FLAGS``: one worker,
    loopback, a free port, ``--log-level warning``, no access log, no proxy headers; uvloop and
    httptools when installed), its own session (Ctrl-C reaches only the bench, which stops them
    in order) and, on Linux, a SIGTERM when the bench dies without cleaning up. The hub is
    ``hub.app:create_app`` (``HUB_APP``) exactly as ``aether serve`` builds it; the reference
    apps live in ``bench.references``. Every server gets the caller's environment minus every
    ``AETHER_*`` variable, plus the bench's own (``bench_env``).

Hub internals
    The bench talks to the hub through ``hub.app.create_app``, ``hub.settings.Settings``,
    ``db.*``, the ``aether`` CLI and ``hub.services.*`` only. The one call into something that
    may move (``hub.app.build_runtime``, for the in-process claim timing) is ``open_runtime``.

PostgreSQL
    ``Postgres`` starts ONE throwaway server (``tools/pgserver.py``: ``fsync=off``,
    ``synchronous_commit=off``) the first time a scenario needs it and stops it at the end of the
    run; every figure gets its own database on it. Without the binaries the PostgreSQL figures
    are skipped, except with ``--smoke``, where that is an error.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import dataclasses
import datetime as dt
import json
import os
import platform
import resource
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Awaitable, Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
HUB_APP = "hub.app:create_app"
UVICORN_FLAGS = (
    "--factory",
    "--host",
    "127.0.0.1",
    "--log-level",
    "warning",
    "--no-access-log",
    "--no-proxy-headers",
)
BACKENDS = ("sqlite", "postgresql")
BACKEND_LABELS = {"sqlite": "SQLite", "postgresql": "PostgreSQL"}
AGENT_ID = "bench-agent"  # the agent prepare_data makes (read by the requests scenario)


class BenchError(RuntimeError):
    """The bench cannot give honest numbers (a server failed, answered non-200, …)."""


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def percentile(values: list[float], p: float) -> float:
    """Nearest-rank percentile of ``values`` (0.0 when empty)."""
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(p / 100 * len(ordered)) - 1))]


def positive_list(text: str) -> list[int]:
    """An argparse type: comma-separated integers, each >= 1."""
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"not a comma-separated list of integers: {text}"
        ) from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError("the counts must be >= 1")
    return values


def backend_list(text: str) -> list[str]:
    """An argparse type: comma-separated backends among ``BACKENDS``, in that order."""
    names = [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in BACKENDS]
    if not names or unknown:
        raise argparse.ArgumentTypeError(f"choose among {', '.join(BACKENDS)}: {text}")
    return [b for b in BACKENDS if b in names]


# --- the machine --------------------------------------------------------------------------


def _installed(module: str) -> str | None:
    try:
        imported = __import__(module)
    except ImportError:
        return None
    return f"{module} {getattr(imported, '__version__', '')}".strip()


def machine() -> dict[str, Any]:
    """CPU model, usable cores, memory, Python, the event loop and HTTP parser, the date."""
    cpu = platform.processor() or platform.machine()
    memory_gb = None
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                memory_gb = round(int(line.split()[1]) / 1024**2, 1)
                break
    try:
        usable = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        usable = os.cpu_count() or 0
    return {
        "cpu": cpu,
        "cores": usable,
        "memory_gb": memory_gb,
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "loop": _installed("uvloop") or "asyncio",
        "http": _installed("httptools") or "h11",
        "date": dt.date.today().isoformat(),
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


def busy_percent(seconds: float = 1.0) -> float | None:
    """How busy the whole machine is right now, in percent of all cores; None without
    /proc. Sampled before the servers start, so it is other processes' load."""
    before = machine_cpu()
    time.sleep(seconds)
    after = machine_cpu()
    if before is None or after is None or after[1] <= before[1]:
        return None
    return round(100.0 * (after[0] - before[0]) / (after[1] - before[1]), 1)


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


def _stat_fields(pid: int) -> list[str] | None:
    """The fields of /proc/PID/stat after the command (field 3 on); None without it."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def process_cpu(pid: int) -> float | None:
    """User + system CPU seconds of one process (all its threads); None without /proc."""
    fields = _stat_fields(pid)
    if fields is None:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


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
        return time.perf_counter(), hubs, pg, own_cpu(), machine_cpu()

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


def cpu_percent(cpu: dict[str, float | None]) -> dict[str, float | None]:
    """The percent entries of a ``CpuMeter.stop`` result, rounded (the ``*_s`` dropped)."""
    return {k: None if v is None else round(v, 1) for k, v in cpu.items() if not k.endswith("_s")}


# --- servers --------------------------------------------------------------------------------


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
        return process_cpu(self.process.pid)

    def log_tail(self, lines: int = 30) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        return ""

    def problems(self) -> list[str]:
        """The warning and error lines of its output (its JSON log, or uvicorn's own)."""
        with contextlib.suppress(OSError):
            return [
                line[:300]
                for line in self.log_path.read_text(errors="replace").splitlines()
                if _is_problem(line)
            ]
        return []

    def check_alive(self, label: str | None = None) -> None:
        if self.process.poll() is not None:
            raise BenchError(f"{label or 'the ' + self.name + ' server'} died:\n{self.log_tail()}")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)  # uvicorn: graceful, runs lifespan exit
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)


def _is_problem(line: str) -> bool:
    lowered = line.lower()
    return (
        '"level": "warning"' in lowered
        or '"level": "error"' in lowered
        or '"level": "critical"' in lowered
        or line.startswith(("WARNING", "ERROR", "CRITICAL", "Traceback"))
    )


def start_server(
    name: str, app: str, data_dir: Path, extra_env: dict[str, str] | None = None
) -> Server:
    """``app`` (``module:factory``) as one uvicorn process on a free loopback port."""
    port = free_port()
    log_path = data_dir / f"{name}.log"
    command = [sys.executable, "-m", "uvicorn", app, *UVICORN_FLAGS, "--port", str(port)]
    with log_path.open("wb") as out:
        process = subprocess.Popen(
            command,
            cwd=ROOT,
            env={**bench_env(data_dir), **(extra_env or {})},
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            preexec_fn=_child_setup if os.name == "posix" else None,
        )
    return Server(name, port, process, log_path)


def start_hub(name: str, data_dir: Path, extra_env: dict[str, str] | None = None) -> Server:
    """The hub, as served: ``hub.app:create_app`` in its own uvicorn process."""
    return start_server(name, HUB_APP, data_dir, extra_env)


def wait_ready(server: Server, timeout: float = 60.0) -> None:
    """Until ``GET /health/live`` answers 200 (every server of the bench has it)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise BenchError(
                f"the {server.name} server exited with {server.process.returncode}:\n"
                + server.log_tail()
            )
        url = server.base_url + "/health/live"
        with contextlib.suppress(OSError), urllib.request.urlopen(url, timeout=2) as response:
            if response.status == 200:
                return
        time.sleep(0.05)
    raise BenchError(f"the {server.name} server did not answer within {timeout:.0f}s")


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


def settle(server: Server, window: float = 1.0, below: float = 0.05) -> float:
    """Wait until ``server`` used less than ``below`` of a core over a whole ``window`` (at
    most 120 s; no wait without /proc); returns the seconds waited. Stricter than
    ``wait_idle``: on a busy machine a loading hub may get little CPU for 0.3 s."""
    started = time.perf_counter()
    before = server.cpu_seconds()
    while before is not None and time.perf_counter() - started < 120:
        time.sleep(window)
        after = server.cpu_seconds()
        if after is None or after - before < below * window:
            break
        before = after
    else:
        if before is not None:
            log(f"warning: the {server.name} server is still busy after 120s")
    return time.perf_counter() - started


def log_tails(servers: list[Server], label: str = "") -> None:
    """The last lines of each server's output, to stderr (after a failure)."""
    for server in servers:
        tail = server.log_tail(15)
        if tail:
            log(f"--- last lines of {label or 'the'} {server.name} server's output ---\n{tail}")


@contextlib.contextmanager
def running(servers: list[Server], label: str = "") -> Iterator[list[Server]]:
    """Stop ``servers`` on exit (any added to the list meanwhile too); their output's tail is
    logged when the body raises."""
    try:
        yield servers
    except Exception:
        log_tails(servers, label)
        raise
    finally:
        for server in servers:
            server.stop()


def prepare_data(data_dir: Path) -> str:
    """Migrate the data folder's database, create agent ``AGENT_ID`` and an admin key; return
    the key's secret."""
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
            "description": "Read by the requests bench.",
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


def prepare_database(url: str) -> str:
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


def open_runtime(settings: Any) -> Any:
    """The hub's runtime in this process, serving nothing: the database opened and migrated,
    the instance registered, the providers loaded (no workers unless ``settings`` asks).

    The one call of the bench into the hub's internals: ``hub.app.build_runtime`` (what
    ``create_app`` runs first); where it is gone, the runtime of a whole ``create_app``."""
    try:
        from hub.app import build_runtime
    except ImportError:
        from hub.app import create_app

        return create_app(settings).runtime
    return build_runtime(settings)


# --- PostgreSQL -----------------------------------------------------------------------------


class Postgres:
    """One throwaway PostgreSQL server for the run, started on first use (``get``)."""

    def __init__(self, required: bool) -> None:
        self.required = required  # --smoke: missing binaries are an error
        self.server: Any = None
        self.error: str | None = None
        self.tried = False

    def get(self, label: str) -> Any:
        """The server (a ``tools.pgserver.PgServer``), or None when its binaries are missing
        (a BenchError instead when they are required, or when it does not start)."""
        if not self.tried:
            self.tried = True
            from tools.pgserver import PgServer, find_pg_bindir

            if find_pg_bindir() is None:
                self.error = (
                    "PostgreSQL binaries not found (tools/ensure_postgres.sh installs them, or "
                    "set AETHER_PG_BINDIR)"
                )
            else:
                log(f"{label}: starting a throwaway PostgreSQL server")
                try:
                    self.server = PgServer(dbname="bench").start()
                except RuntimeError as exc:
                    self.error = f"the PostgreSQL server did not start: {exc}"
                    raise BenchError(self.error) from None
        if self.server is None and self.error:
            if self.required or not self.error.startswith("PostgreSQL binaries"):
                raise BenchError(f"{label}: {self.error}")
            log(f"{label}: {self.error}: the PostgreSQL figures are skipped")
        return self.server

    @property
    def version(self) -> str | None:
        """The server's major version (its bin dir's parent), or None when not running."""
        return os.path.basename(os.path.dirname(self.server.bindir)) if self.server else None

    @property
    def pid(self) -> int | None:
        """The postmaster's pid (its backends are its children), or None."""
        proc = getattr(self.server, "_proc", None)
        return proc.pid if proc is not None else None

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()
            self.server = None


@dataclasses.dataclass
class Context:
    """What a scenario gets besides its options: the shared PostgreSQL and the smoke flag."""

    postgres: Postgres
    smoke: bool = False

    def busy_before(self) -> float | None:
        """How busy the machine is before a scenario starts its servers; warns when > 20%."""
        busy = busy_percent(0.2 if self.smoke else 1.0)
        if busy is not None and busy > 20:
            log(f"warning: the machine is {busy:.0f}% busy before the bench starts: noisy figures")
        return busy


# --- HTTP: one JSON call, and the raw keep-alive clients ------------------------------------


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


def fetch(server: Server, path: str, secret: str) -> tuple[int, bytes]:
    """``GET path`` with the bearer ``secret``: (status, body), whatever the status."""
    request = urllib.request.Request(
        server.base_url + path, headers={"Authorization": f"Bearer {secret}"}
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def run_async(coroutine: Awaitable[Any]) -> Any:
    """Run on uvloop when installed (a lighter client), else asyncio."""

    async def main() -> Any:
        return await coroutine

    try:
        import uvloop
    except ImportError:
        return asyncio.run(main())
    return uvloop.run(main())


def post_request(port: int, path: str, secret: str, body: dict[str, Any]) -> bytes:
    """The bytes of one HTTP/1.1 JSON POST (compact JSON)."""
    payload = json.dumps(body, separators=(",", ":")).encode()
    return (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAuthorization: Bearer {secret}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(payload)}\r\n\r\n"
    ).encode() + payload


async def read_response(reader: asyncio.StreamReader) -> tuple[int, dict[bytes, bytes], bytes]:
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


async def skip_response(reader: asyncio.StreamReader) -> tuple[int, bool]:
    """Read one HTTP/1.1 response, dropping its body; return (status, server keeps the
    connection). Lighter than ``read_response``, for the load client."""
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
                status, keep_alive = await skip_response(reader)
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


def python_load(port: int, path: str, secret: str, seconds: float, concurrency: int) -> dict:
    """The built-in load generator: ``keep_alive_load`` of ``GET path`` answered 200."""
    request = (
        f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAuthorization: Bearer {secret}\r\n\r\n"
    ).encode()
    latencies, counts = run_async(keep_alive_load(port, request, seconds, concurrency))
    counts["non200"] = counts.pop("unexpected")
    ms = [value / 1e6 for value in latencies]
    return {
        "requests": len(latencies),
        "seconds": seconds,
        "p50_ms": percentile(ms, 50),
        "p99_ms": percentile(ms, 99),
        **counts,
    }


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


def wrk_version(wrk: str) -> str:
    result = subprocess.run([wrk, "--version"], capture_output=True, text=True, check=False)
    first = (result.stdout or result.stderr).splitlines()
    return first[0].split(" [")[0] if first else "wrk"


def wrk_load(
    wrk: str, script: Path, url: str, secret: str, seconds: int, concurrency: int
) -> dict[str, Any]:
    """``wrk`` (1 thread) with ``WRK_SCRIPT`` (written to ``script``) on ``url``."""
    command = [wrk, "-t1", f"-c{concurrency}", f"-d{seconds}s", "--timeout", "5s"]
    command += ["-s", str(script), "-H", f"Authorization: Bearer {secret}", url]
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


# --- process limits and signals -------------------------------------------------------------


def raise_nofile(wanted: int) -> int:
    """Raise the soft open-files limit towards ``wanted`` (capped by the hard limit); the
    servers started afterwards inherit it. Returns the soft limit now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft != resource.RLIM_INFINITY and soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        soft = target
    return int(soft)


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
