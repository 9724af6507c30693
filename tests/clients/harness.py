"""What the generated-client suites share: a live hub (a real ``aether serve`` on SQLite in a
temp folder), the generators run from their own venvs under ``.tools/`` against the spec that
hub serves, and the generated package imported into this process.

Generation happens once per test run: under pytest-xdist the first worker to need a client
generates it into the run's shared temp folder, under a lock, and the others import that copy.
"""

from __future__ import annotations

import contextlib
import fcntl
import importlib
import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType

import pytest

from tests.servers import Processes, hub_env

ROOT = Path(__file__).resolve().parents[2]
TOOLS = ROOT / ".tools"  # one venv per generator, installed by the Makefile
CONFIG = ROOT / "tools" / "clients"  # their pins and configuration files
SPEC_PATH = "/api/v1/openapi.json"

# A line a generator prints to say something went wrong or may be missing: any such line
# fails the suite's first test (the generators' own words: ``WARN``, ``Warning(s)``, ``ERROR``).
WARNING = re.compile(r"\b(warn|error)", re.IGNORECASE)


@contextlib.contextmanager
def live_hub(tmp_path_factory) -> Iterator[str]:
    """``aether serve`` on a fresh SQLite database, admin token ``TOKEN``; yields its URL."""
    data = tmp_path_factory.mktemp("client-hub")
    processes = Processes()
    try:
        yield processes.serve(hub_env(f"sqlite:///{data / 'hub.db'}", data))
    finally:
        processes.stop_all()


def tool(name: str, executable: str) -> Path:
    """An executable of the generator venv ``.tools/<name>``; fails when it is not installed."""
    path = TOOLS / name / "bin" / executable
    if not path.exists():
        pytest.fail(
            f"{path.relative_to(ROOT)} is missing: `make client-generators` installs it (so do "
            "`make test` and `make test-clients`)"
        )
    return path


def run(argv: list[str], **kwargs) -> dict:
    """Run a generator; its exit status, its output (stdout and stderr interleaved), its time."""
    started = time.monotonic()
    done = subprocess.run(
        argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, check=False, **kwargs
    )
    seconds = round(time.monotonic() - started, 1)
    return {"argv": argv, "returncode": done.returncode, "output": done.stdout, "seconds": seconds}


def generate_once(tmp_path_factory, name: str, generate: Callable[[Path], dict]) -> dict:
    """``generate(folder)`` once per test run; answers its ``run`` record plus ``folder``."""
    base = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        base = base.parent  # shared by every worker of this run
    folder = base / f"client-{name}"
    record = base / f"client-{name}.json"  # written last: the mark of a finished generation
    with open(base / f"client-{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not record.exists():
            record.write_text(json.dumps({**generate(folder), "folder": str(folder)}))
    return json.loads(record.read_text())


def warnings_in(output: str) -> list[str]:
    return [line for line in output.splitlines() if WARNING.search(line)]


def import_generated(generation: dict, package: str) -> ModuleType:
    """The generated package, imported from its folder; fails with the generator's output when
    there is none."""
    if generation["returncode"] != 0:
        pytest.fail(f"{generation['argv'][0]} failed:\n{generation['output']}")
    folder = generation["folder"]
    if folder not in sys.path:
        sys.path.insert(0, folder)
    return importlib.import_module(package)


def poll(read: Callable[[], object], done: Callable[[object], bool], what: str) -> object:
    """``read()`` until ``done(value)`` (bounded: 10 s); answers the last value."""
    deadline = time.monotonic() + 10
    while True:
        value = read()
        if done(value):
            return value
        assert time.monotonic() < deadline, f"gave up waiting for {what}: {value!r}"
        time.sleep(0.05)
