"""``python -m bench [SCENARIO ...] [--only SCENARIO] [--smoke] [--json] [--write [FILE]]``.

Runs the chosen scenarios (default: all, in the order of ``SCENARIOS``), prints one Markdown
table set (or JSON) to stdout, progress to stderr. ``--smoke`` runs each at tiny sizes (every
size option the command line leaves at its default takes the scenario's ``SMOKE`` value);
``--write`` rewrites the generated part of docs/performance.md. Exits non-zero when a
scenario raises, produces no measurement, or reports invalid figures (non-200/201 answers,
lost tasks, different search hits, missed events…).
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
import traceback
from pathlib import Path
from types import ModuleType
from typing import Any

from bench import (
    concurrency,
    events,
    harness,
    mcp_calls,
    memory,
    report,
    requests,
    streaming,
    tasks,
    workflows,
)
from bench.harness import BenchError, Context, Postgres, log

SCENARIOS: dict[str, ModuleType] = {
    m.NAME: m
    for m in (requests, streaming, concurrency, tasks, workflows, memory, events, mcp_calls)
}
SMOKE_BUDGET_S = 60.0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description="Benchmark the hub beside its references: a bare Starlette + Peewee app, "
        "the upstream read directly, the same SQL on a raw connection.",
    )
    names = ", ".join(SCENARIOS)
    parser.add_argument(
        "scenarios", nargs="*", metavar="SCENARIO", help=f"scenarios to run ({names}; default all)"
    )
    parser.add_argument(
        "--only",
        choices=list(SCENARIOS),
        action="append",
        help="run only this scenario (repeatable; the same as naming it)",
    )
    parser.add_argument(
        "--smoke",
        action="store_true",
        help="every scenario at tiny sizes, to check the bench works (not a measurement); "
        "PostgreSQL binaries are then required",
    )
    parser.add_argument("--json", action="store_true", help="print JSON instead of tables")
    parser.add_argument(
        "--write",
        nargs="?",
        const=str(report.DOC),
        metavar="FILE",
        help="also rewrite the generated part of FILE (default docs/performance.md) between "
        f"{report.BEGIN} and {report.END}",
    )
    for module in SCENARIOS.values():
        module.add_arguments(parser)
    return parser


def parse(argv: list[str] | None) -> tuple[argparse.Namespace, list[str]]:
    parser = build_parser()
    args = parser.parse_args(argv)
    unknown = [name for name in args.scenarios if name not in SCENARIOS]
    if unknown:
        parser.error(f"unknown scenario {', '.join(unknown)} (choose among {', '.join(SCENARIOS)})")
    chosen = {*args.scenarios, *(args.only or ())}
    selected = [name for name in SCENARIOS if not chosen or name in chosen]
    if args.smoke:
        if args.write:
            parser.error("--smoke figures are not measurements: no --write with --smoke")
        for module in SCENARIOS.values():
            for dest, value in module.SMOKE.items():
                if getattr(args, dest) == parser.get_default(dest):
                    setattr(args, dest, value)
    for module in SCENARIOS.values():
        module.check_arguments(parser, args)
    return args, selected


def run(args: argparse.Namespace, selected: list[str]) -> tuple[dict[str, Any], list, list[str]]:
    """Every selected scenario; returns the results, their tables and the failed names."""
    ctx = Context(Postgres(required=args.smoke), smoke=args.smoke)
    results: dict[str, Any] = {}
    tables: list[report.Table] = []
    failed: list[str] = []
    try:
        for name in selected:
            module = SCENARIOS[name]
            started = time.perf_counter()
            log(f"==> {name}")
            try:
                result = module.measure(args, ctx)
                results[name] = result
                tables += module.tables(result)
                if module.failed(result):
                    failed.append(name)
                elif not module.count(result):
                    log(f"FAIL: {name} produced no measurement")
                    failed.append(name)
            except BenchError as exc:
                log(f"bench failed ({name}): {exc}")
                failed.append(name)
            except Exception:
                log(f"bench failed ({name}):\n{traceback.format_exc()}")
                failed.append(name)
            log(f"<== {name}: {time.perf_counter() - started:.1f}s")
    finally:
        ctx.postgres.stop()
    return results, tables, failed


def main(argv: list[str] | None = None) -> int:
    started = time.perf_counter()
    args, selected = parse(argv)
    about = harness.machine()
    try:
        with harness.terminate_on_sigterm():
            results, tables, failed = run(args, selected)
    except KeyboardInterrupt:
        log("interrupted: servers stopped, temporary data removed")
        return 130
    if args.json:
        print(json.dumps({"machine": about, **results}, indent=2, ensure_ascii=False, default=str))
    else:
        print(report.render(tables) + "\n\n" + report.machine_line(about))
    if args.write and failed:
        log(f"not writing {args.write}: a scenario failed")
    elif args.write:
        command = shlex.join(["python", "-m", "bench", *(sys.argv[1:] if argv is None else argv)])
        report.write(Path(args.write), report.document(tables, about, command))
        log(f"wrote the generated part of {args.write}")
    elapsed = time.perf_counter() - started
    summary = f"{len(selected) - len(failed)}/{len(selected)} scenarios ok in {elapsed:.1f}s"
    if failed:
        summary += f"; FAILED: {', '.join(failed)}"
    if args.smoke and elapsed > SMOKE_BUDGET_S:
        summary += f" (over the smoke budget of {SMOKE_BUDGET_S:g}s)"
    log(("smoke: " if args.smoke else "bench: ") + summary)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
