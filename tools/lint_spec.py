"""Lint openapi.yaml with Redocly CLI (`recommended`) and Spectral (`spectral:oas`): 0 errors
and 0 warnings, or exit 1 with every problem shown. Both tools are pinned in
tools/lint/package.json and installed by `make check` (npm ci --ignore-scripts); their
configurations, with the reason for each rule changed, are tools/lint/redocly.yaml and
tools/lint/spectral.yaml."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LINT = ROOT / "tools" / "lint"
BIN = LINT / "node_modules" / ".bin"
SPEC = ROOT / "openapi.yaml"
QUIET = {  # the tools run offline: no telemetry, no update check, no analytics
    "REDOCLY_TELEMETRY": "off",
    "REDOCLY_SUPPRESS_UPDATE_NOTICE": "true",
    "SCARF_ANALYTICS": "false",
    "DO_NOT_TRACK": "1",
}


def run(argv: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        argv, cwd=ROOT, env={**os.environ, **QUIET}, capture_output=True, text=True, timeout=300
    )


def redocly() -> bool:
    base = [str(BIN / "redocly"), "lint", "--config", str(LINT / "redocly.yaml"), str(SPEC)]
    answer = run([*base, "--format=json"])
    try:
        totals = json.loads(answer.stdout)["totals"]
    except (ValueError, KeyError):
        print(answer.stdout, answer.stderr, sep="\n", file=sys.stderr)
        return False
    if totals["errors"] or totals["warnings"]:
        print(run([*base, "--format=stylish"]).stdout, file=sys.stderr)
        print(f"redocly: {totals['errors']} errors, {totals['warnings']} warnings", file=sys.stderr)
        return False
    print("redocly (recommended): 0 errors, 0 warnings")
    return True


def spectral() -> bool:
    answer = run(
        [
            str(BIN / "spectral"), "lint", str(SPEC), "--ruleset", str(LINT / "spectral.yaml"),
            "--fail-severity=warn", "--display-only-failures",
        ]
    )  # fmt: skip
    if answer.returncode != 0:
        print(answer.stdout, answer.stderr, sep="\n", file=sys.stderr)
        return False
    print("spectral (spectral:oas): 0 errors, 0 warnings")
    return True


if __name__ == "__main__":
    results = [redocly(), spectral()]  # both, so one run shows every problem
    sys.exit(0 if all(results) else 1)
