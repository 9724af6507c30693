"""The TypeScript client as a test: openapi-typescript makes types from the spec a live hub
serves, strict tsc checks them with the smoke suite (tests/clients/typescript/smoke.mts) and
compiles it, and node runs the suite's openapi-fetch calls against that hub.

The generators are the pins of tests/clients/typescript/package-lock.json, installed there by
``make test-clients`` (``npm ci``). Everything generated goes to a temp folder, never the repo.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from tests.servers import TOKEN, Processes, hub_env

pytestmark = pytest.mark.toolchain  # needs Node: make test-clients runs it, make test does not

PROJECT = Path(__file__).parent / "typescript"
BIN = PROJECT / "node_modules" / ".bin"
QUIET = {"SCARF_ANALYTICS": "false", "DO_NOT_TRACK": "1", "NO_COLOR": "1"}
INSTALL = "make test-clients installs them (npm ci in tests/clients/typescript)"


@pytest.fixture
def hub(tmp_path):
    processes = Processes()
    try:
        yield processes.serve(hub_env(f"sqlite:///{tmp_path / 'hub.db'}", tmp_path / "data"))
    finally:
        processes.stop_all()


def test_the_generated_client_passes_its_smoke_suite_against_a_live_hub(hub, tmp_path):
    node = _node()
    _installed_as_pinned()
    work = tmp_path / "ts"
    work.mkdir()
    (work / "node_modules").symlink_to(PROJECT / "node_modules")  # for node, from out/
    timings = {}

    started = time.monotonic()
    generated = _generate(f"{hub}/api/v1/openapi.json", work / "aether-hub-api.d.ts")
    timings["generate"] = time.monotonic() - started
    assert generated.stderr == "", f"openapi-typescript warned:\n{generated.stderr}"

    tsconfig = {
        "extends": str(PROJECT / "tsconfig.json"),
        "compilerOptions": {
            "rootDir": str(PROJECT),
            "outDir": "out",
            "paths": {"aether-hub-api": ["./aether-hub-api.d.ts"]},
        },
        "files": [str(PROJECT / "smoke.mts"), "aether-hub-api.d.ts"],
    }
    (work / "tsconfig.json").write_text(json.dumps(tsconfig, indent=2))
    started = time.monotonic()
    # One strict program over the generated types and the suite: a type error fails it and
    # emits nothing (noEmitOnError), else it writes out/smoke.mjs.
    _run([BIN / "tsc", "--project", work / "tsconfig.json"], PROJECT, "tsc")
    timings["tsc"] = time.monotonic() - started

    started = time.monotonic()
    suite = _run(
        [node, "--enable-source-maps", work / "out" / "smoke.mjs"],
        work,
        "the smoke suite",
        AETHER_HUB_URL=hub,
        AETHER_TOKEN=TOKEN,
    )
    timings["run"] = time.monotonic() - started
    print(suite.stdout, end="")
    print("seconds:", ", ".join(f"{step} {seconds:.1f}" for step, seconds in timings.items()))


def test_the_generators_lint_warns_on_a_spec_that_breaks_its_rules(tmp_path):
    """The no-warning check above means something: the same lint warns on a bad spec."""
    _node()
    _installed_as_pinned()
    spec = {
        "openapi": "3.0.3",
        "info": {"title": "No servers, no summary", "version": "1"},
        "paths": {"/x": {"get": {"responses": {"200": {"description": "OK"}}}}},
    }
    (tmp_path / "bad.json").write_text(json.dumps(spec))
    generated = _generate(tmp_path / "bad.json", tmp_path / "bad.d.ts")
    assert "⚠  Servers must be present" in generated.stderr, generated.stderr


def _generate(source, output: Path) -> subprocess.CompletedProcess:
    """openapi-typescript, linting with typescript/redocly.yaml (without a config it applies no
    rule). --default-non-nullable false: by default a request schema's property with a `default`
    (MessageCreate.stream, TaskCreate.max_attempts …) is typed as required."""
    argv = [BIN / "openapi-typescript", source, "--redocly", PROJECT / "redocly.yaml"]
    argv += ["--default-non-nullable", "false", "--output", output]
    return _run(argv, output.parent, "openapi-typescript")


def _node() -> str:
    node = shutil.which("node")
    assert node and shutil.which("npm"), "the TypeScript client test needs Node 20+ and npm"
    version = subprocess.run([node, "--version"], capture_output=True, text=True).stdout.strip()
    assert int(version.lstrip("v").split(".")[0]) >= 20, f"Node 20+ needed, found {version}"
    return node


def _installed_as_pinned() -> None:
    pins = json.loads((PROJECT / "package.json").read_text())["devDependencies"]
    for name, pin in pins.items():
        manifest = PROJECT / "node_modules" / name / "package.json"
        assert manifest.exists(), f"{name} is not installed: {INSTALL}"
        installed = json.loads(manifest.read_text())["version"]
        assert installed == pin, f"{name} {installed} is installed, {pin} pinned: {INSTALL}"


def _run(argv: list, cwd: Path, what: str, **env: str) -> subprocess.CompletedProcess:
    done = subprocess.run(
        [str(arg) for arg in argv],
        cwd=cwd,
        env={**os.environ, **QUIET, **env},
        capture_output=True,
        text=True,
        timeout=180,
    )
    if done.returncode != 0:
        output = f"{done.stdout}{done.stderr}".rstrip()
        pytest.fail(f"{what} failed (exit {done.returncode}):\n{output}", pytrace=False)
    return done
