"""User programs, bounded and apart: jq filters and Jinja templates run in other processes.

jq runs in C holding the GIL, and a template's loops are plain Python: either can spin for
hours, and in the hub's own process that stalls the event loop, the SQLite writer and
shutdown. So every user program is evaluated here, in a small warm pool of worker processes
(``python -m hub.core.programs``), with three limits:

- **time** (``AETHER_PROGRAM_TIMEOUT_MS``, default 200 ms from the request being sent to
  its answer): past it the worker is killed (SIGKILL) and replaced, and the caller gets
  :class:`ProgramError` with ``reason == "timeout"``. A worker the machine starved of CPU
  (it used less than half the limit running) waits on, up to ten times the limit, so that a
  loaded machine does not fail a quick filter; a spinning program is stopped at the limit;
- **memory** (``AETHER_PROGRAM_MEMORY_MB``, default 256): the worker's address space
  (``RLIMIT_AS``); a program that needs more fails with ``reason == "memory"`` and the
  worker is replaced;
- **output**: a template's rendered text and a jq program's first output are cut off at the
  caller's limit (``reason == "too_large"``).

At most ``AETHER_PROGRAM_WORKERS`` workers run (default 2); a caller waits for an idle one at
most ``BUSY_WAIT_SECONDS``. Workers start on first use (``warm()`` starts one ahead), die
with the hub (a worker reading a closed pipe exits; they are daemons of the hub process),
and hold nothing between requests but compiled programs. A worker never sees the database,
settings or secrets: only the program and the value it runs over.

Callers (``hub.core.jqfilter``, ``hub.services.actions``) never call this inside a write
transaction: the result is computed first, then written (``refuse_when`` makes it an error).
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import ctypes
import functools
import logging
import os
import resource
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from multiprocessing.connection import Connection

import jinja2
import jq
from jinja2.sandbox import ImmutableSandboxedEnvironment, SecurityError

from hub.settings import current_settings

log = logging.getLogger("aether.programs")

BUSY_WAIT_SECONDS = 10.0  # a caller's longest wait for an idle worker
START_SECONDS = 30.0  # a new worker's longest start (a Python start and two imports)
STARVED_FACTOR = 10  # a worker starved of CPU may take this many times the limit
ALARM_GRACE_SECONDS = 1.0  # a worker ends itself this long after its longest wait passed
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
PR_SET_PDEATHSIG = 1  # prctl(2)
DIED = ("error", "memory", "the program ended its worker process (out of memory?)", None)
MAX_MESSAGE = 1000  # characters of an error message kept


class ProgramError(Exception):
    """A user program that did not give an answer. ``reason`` is one of ``compile``,
    ``runtime``, ``timeout``, ``memory``, ``too_large``, ``busy``; ``line`` is the
    template line of a compile error, when known; ``str()`` is for a person."""

    def __init__(self, reason: str, message: str, line: int | None = None) -> None:
        super().__init__(message)
        self.reason = reason
        self.line = line


# --- the worker side (runs in the pool's processes) ----------------------------------------


class _Failed(Exception):
    def __init__(self, reason: str, message: str, line: int | None = None) -> None:
        super().__init__(message)
        self.reason, self.line = reason, line


@functools.lru_cache(maxsize=512)
def _jq(program: str):
    try:
        return jq.compile(program)
    except ValueError as exc:
        raise _Failed("compile", str(exc)) from None


MAX_REPEAT = 100_000  # the longest sequence ``*`` may make in a template
MAX_EXPONENT = 1000


class _Sandbox(ImmutableSandboxedEnvironment):
    """Jinja2 in a sandbox: ``ImmutableSandboxedEnvironment`` (no Python internals, no unsafe
    calls, lists and dicts cannot be changed), with bounded repetition (``*``) and exponents
    (``**``)."""

    intercepted_binops = frozenset({"*", "**"})

    def call_binop(self, context, operator, left, right):
        if operator == "*":
            for sequence, times in ((left, right), (right, left)):
                if (
                    isinstance(sequence, str | list | tuple)
                    and isinstance(times, int)
                    and len(sequence) * times > MAX_REPEAT
                ):
                    raise SecurityError(f"a repetition longer than {MAX_REPEAT} is not allowed")
        if operator == "**" and isinstance(right, int) and abs(right) > MAX_EXPONENT:
            raise SecurityError(f"an exponent above {MAX_EXPONENT} is not allowed")
        return super().call_binop(context, operator, left, right)


# ``StrictUndefined``: a missing name is an error, never an empty string; autoescape off: the
# output is plain text for an agent.
_env = _Sandbox(undefined=jinja2.StrictUndefined, autoescape=False, keep_trailing_newline=True)


@functools.lru_cache(maxsize=256)
def _template(source: str):
    try:
        return _env.from_string(source)
    except jinja2.TemplateSyntaxError as exc:
        raise _Failed("compile", f"{exc.message} (line {exc.lineno})", exc.lineno) from None


def _jq_check(program: str) -> None:
    _jq(program)


def _jq_matches(program: str, value) -> bool:
    try:
        for output in _jq(program).input_value(value):
            return output is not None and output is not False
    except ValueError as exc:
        raise _Failed("runtime", str(exc)) from None
    return False


def _template_check(source: str) -> None:
    _template(source)


def _render(source: str, context: dict, limit: int) -> str:
    chunks, size = [], 0
    try:
        for chunk in _template(source).generate(context):
            chunks.append(chunk)
            size += len(chunk)
            if size > limit:
                raise _Failed("too_large", f"the template rendered more than {limit} characters")
    except jinja2.TemplateError as exc:
        raise _Failed("runtime", str(exc)) from None
    return "".join(chunks)


_HANDLERS = {
    "jq_check": _jq_check,
    "jq_matches": _jq_matches,
    "template_check": _template_check,
    "render": _render,
}


def _serve(requests: Connection, answers: Connection, memory_bytes: int, hub_pid: int) -> None:
    """A worker: answer requests until the hub closes the pipe. A worker whose hub dies
    mid-program does not spin on: on Linux the kernel kills it with its hub (the parent-death
    signal), and each request runs under an alarm a little past the hub's longest wait, whose
    default action ends the process even inside C code."""
    _die_with(hub_pid)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the hub; it stops us
    signal.signal(signal.SIGALRM, signal.SIG_DFL)
    if memory_bytes > 0:
        resource.setrlimit(resource.RLIMIT_AS, (memory_bytes, memory_bytes))
    _template("{{ warm }}").render(warm="up")  # lazy set-up, paid before the first limit
    _jq_matches(".", True)
    answers.send(("ready", os.getpid()))
    while True:
        try:
            kind, args, timeout = requests.recv()
        except (EOFError, OSError):
            return
        signal.setitimer(signal.ITIMER_REAL, timeout * STARVED_FACTOR + ALARM_GRACE_SECONDS)
        try:
            answer = ("ok", _HANDLERS[kind](*args))
        except _Failed as exc:
            answer = ("error", exc.reason, _clip(str(exc)), exc.line)
        except MemoryError:
            answer = ("error", "memory", "the program ran out of memory", None)
        except RecursionError:
            answer = ("error", "runtime", "the program nests too deeply", None)
        except Exception as exc:  # a template's own errors (1 / 0, a bad comparison …)
            answer = ("error", "runtime", _clip(f"{type(exc).__name__}: {exc}"), None)
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
        try:
            answers.send(answer)
        except MemoryError:
            answer = ("error", "memory", "the program ran out of memory", None)
            answers.send(answer)
        if answer[0] == "error" and answer[1] == "memory":
            return  # a worker that hit its limit may be in a bad state: the hub starts another


def _die_with(hub_pid: int) -> None:
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != hub_pid:  # the hub died before the signal was armed
        os._exit(0)


def _clip(message: str) -> str:
    return message if len(message) <= MAX_MESSAGE else message[: MAX_MESSAGE - 1] + "…"


# --- the hub side --------------------------------------------------------------------------


class _Worker:
    """One worker process: ``python -m hub.core.programs``, spoken to over a pipe pair (a
    plain subprocess, not ``multiprocessing.Process``: that would re-import the hub's main
    module in every worker)."""

    def __init__(self, memory_bytes: int) -> None:
        child_reads, hub_writes = os.pipe()
        hub_reads, child_writes = os.pipe()
        try:
            self.process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    __name__,
                    str(child_reads),
                    str(child_writes),
                    str(memory_bytes),
                    str(os.getpid()),
                ],
                pass_fds=(child_reads, child_writes),
                stdin=subprocess.DEVNULL,
                close_fds=True,
                start_new_session=True,  # the terminal's Ctrl-C and job control reach the hub only
            )
        finally:
            os.close(child_reads)
            os.close(child_writes)
        self.requests = Connection(hub_writes, readable=False)
        self.answers = Connection(hub_reads, writable=False)
        if not self.answers.poll(START_SECONDS):
            self.kill()
            raise ProgramError("busy", "a program worker did not start")
        try:
            self.answers.recv()
        except (EOFError, OSError):
            self.kill()
            raise ProgramError("busy", "a program worker did not start") from None

    def call(self, request: tuple, timeout: float):
        """The worker's answer, ``None`` when it did not answer in time, or ``DIED`` when it
        ended (jq aborts on a failed allocation under the memory limit).

        The limit is the program's run time. Past it, a worker that was not given the CPU
        for most of that time (a loaded machine; the hub's own tests on two cores) waits on,
        up to ``STARVED_FACTOR`` times the limit; one that spent it running is a program
        that runs too long."""
        try:
            cpu = self.cpu_seconds()
            self.requests.send((*request, timeout))
            waited, hard = 0.0, timeout * STARVED_FACTOR
            while not self.answers.poll(timeout if waited == 0 else timeout / 4):
                waited += timeout if waited == 0 else timeout / 4
                if waited >= hard or self.cpu_seconds() - cpu >= timeout / 2:
                    return None
            return self.answers.recv()
        except (EOFError, OSError):
            return DIED

    def cpu_seconds(self) -> float:
        """The worker's CPU time so far (Linux ``/proc``; elsewhere 'always busy')."""
        try:
            with open(f"/proc/{self.process.pid}/stat", "rb") as stat:
                fields = stat.read().rsplit(b")", 1)[1].split()
        except OSError:
            return float("inf")
        return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            self.process.kill()
        self.process.wait(5)
        self.requests.close()
        self.answers.close()


class Pool:
    """The worker processes of this hub process (thread-safe; one per process)."""

    def __init__(self) -> None:
        self._lock = threading.Condition()
        self._idle: list[_Worker] = []
        self._count = 0
        # Workers are started from one thread that lives as long as the process: the
        # parent-death signal fires when the thread that started a worker ends, and request
        # threads come and go.
        self._spawner = concurrent.futures.ThreadPoolExecutor(1, "aether-program-spawner")

    def run(self, kind: str, *args, timeout: float, workers: int, memory_bytes: int):
        for refused, why in _refusals:
            if refused():
                raise RuntimeError(f"a user program must not run here: {why}")
        worker = self._checkout(workers, memory_bytes)
        started = time.monotonic()
        answer = worker.call((kind, args), timeout)
        if answer is None or (answer[0] == "error" and answer[1] == "memory"):
            self._discard(worker)
            if answer is None:
                elapsed = (time.monotonic() - started) * 1000
                limit = f"{timeout * 1000:.0f} ms"
                raise ProgramError(
                    "timeout",
                    f"the program ran past its {limit} limit (stopped at {elapsed:.0f} ms)",
                )
            raise ProgramError(*answer[1:])
        self._checkin(worker)
        if answer[0] == "error":
            raise ProgramError(*answer[1:])
        return answer[1]

    def warm(self, memory_bytes: int) -> None:
        """Start one worker ahead of the first program."""
        with self._lock:
            if self._idle or self._count:
                return
        self._checkin(self._checkout(1, memory_bytes))

    def busy(self) -> int:
        """How many workers are running a program now."""
        with self._lock:
            return self._count - len(self._idle)

    def worker_pids(self) -> list[int]:
        """The process ids of the idle workers."""
        with self._lock:
            return [worker.process.pid for worker in self._idle]

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
            self._count -= len(idle)
        for worker in idle:
            worker.kill()

    def _checkout(self, workers: int, memory_bytes: int) -> _Worker:
        deadline = time.monotonic() + BUSY_WAIT_SECONDS
        with self._lock:
            while not self._idle and self._count >= max(workers, 1):
                left = deadline - time.monotonic()
                if left <= 0:
                    raise ProgramError("busy", "every program worker is busy; try again")
                self._lock.wait(left)
            if self._idle:
                return self._idle.pop()
            self._count += 1
        try:
            return self._spawner.submit(_Worker, memory_bytes).result()
        except BaseException:
            with self._lock:
                self._count -= 1
                self._lock.notify()
            raise

    def _checkin(self, worker: _Worker) -> None:
        with self._lock:
            self._idle.append(worker)
            self._lock.notify()

    def _discard(self, worker: _Worker) -> None:
        worker.kill()
        with self._lock:
            self._count -= 1
            self._lock.notify()


_pool = Pool()
_refusals: list[tuple[Callable[[], bool], str]] = []


def refuse_when(refused: Callable[[], bool], why: str) -> None:
    """Refuse to run any program while ``refused()`` holds (the app installs ``db.base``'s
    "inside a write transaction": a program there would hold the writer as long as it runs)."""
    if all(existing is not refused for existing, _ in _refusals):
        _refusals.append((refused, why))


def _limits() -> dict:
    settings = current_settings()
    return {
        "timeout": settings.program_timeout_ms / 1000,
        "workers": settings.program_workers,
        "memory_bytes": settings.program_memory_mb * 1024 * 1024,
    }


def warm() -> None:
    """Start a worker now, so the first program does not wait for one."""
    _pool.warm(_limits()["memory_bytes"])


def close() -> None:
    """Stop the idle workers (busy ones stop when their program ends)."""
    _pool.close()


def check_jq(program: str) -> None:
    """Compile ``program``; ProgramError (``compile``) when it does not."""
    _pool.run("jq_check", program, **_limits())


def jq_matches(program: str, value) -> bool:
    """Whether ``program``'s first output over ``value`` is truthy the jq way (anything but
    ``false`` and ``null``; no output at all does not match)."""
    return _pool.run("jq_matches", program, value, **_limits())


def check_template(source: str) -> None:
    """Parse ``source``; ProgramError (``compile``, with ``line``) when it does not."""
    _pool.run("template_check", source, **_limits())


def render(source: str, context: dict, limit: int) -> str:
    """``source`` rendered over ``context`` (JSON-like values only), at most ``limit``
    characters."""
    return _pool.run("render", source, context, limit, **_limits())


def strings(value, path: str):
    """``(path, text)`` for every string inside a JSON value (a template in each)."""
    if isinstance(value, str):
        yield path, value
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from strings(item, f"{path}[{i}]")
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from strings(item, f"{path}.{key}")


def render_strings(value, context: dict, limit: int, path: str):
    """``value`` with every string inside it rendered as a template over ``context``; a
    failure is the ProgramError of that string, its message led by its ``path``."""
    if isinstance(value, str):
        try:
            return render(value, context, limit)
        except ProgramError as exc:
            raise ProgramError(exc.reason, f"{path}: {exc}", exc.line) from None
    if isinstance(value, list):
        return [render_strings(v, context, limit, f"{path}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, dict):
        return {k: render_strings(v, context, limit, f"{path}.{k}") for k, v in value.items()}
    return value


if __name__ == "__main__":  # a worker process, started by _Worker
    _serve(
        Connection(int(sys.argv[1]), writable=False),
        Connection(int(sys.argv[2]), readable=False),
        int(sys.argv[3]),
        int(sys.argv[4]),
    )
