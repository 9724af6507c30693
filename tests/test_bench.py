"""The bench package (``python -m bench``): every module imports, the CLI parses, and the one
report writer renders tables and rewrites only the generated part of a document. No servers."""

from __future__ import annotations

import importlib
import pkgutil

import pytest

import bench
from bench import report

MODULES = [
    "bench",
    "bench.__main__",
    "bench.harness",
    "bench.references",
    "bench.report",
    "bench.requests",
    "bench.streaming",
    "bench.concurrency",
    "bench.tasks",
    "bench.workflows",
    "bench.memory",
    "bench.events",
    "bench.mcp_calls",
]


@pytest.mark.parametrize("name", MODULES)
def test_every_bench_module_imports(name):
    importlib.import_module(name)


def test_no_bench_module_is_left_out():
    found = {f"bench.{m.name}" for m in pkgutil.iter_modules(bench.__path__)}
    assert found <= set(MODULES)


def test_cli_selects_scenarios_and_applies_smoke_sizes():
    from bench.__main__ import SCENARIOS, parse

    args, selected = parse(["--smoke"])
    assert selected == list(SCENARIOS)
    for module in SCENARIOS.values():
        for dest, value in module.SMOKE.items():
            assert getattr(args, dest) == value, dest
    args, selected = parse(["--smoke", "--seconds", "3", "events", "--only", "requests"])
    assert selected == ["requests", "events"]  # in the run order, not the command's
    assert args.seconds == 3  # an explicit size wins over the smoke size
    args, _ = parse([])
    assert args.seconds == 4 and args.task_count == 1000
    with pytest.raises(SystemExit):
        parse(["no-such-scenario"])
    with pytest.raises(SystemExit):
        parse(["--smoke", "--write"])


def test_markdown_table_pads_and_aligns():
    lines = report.markdown(["name", "rps"], [["hub", "1,562"], ["bare | ref", "12,754"]])
    assert lines == [
        "| name        |    rps |",
        "| ----------- | -----: |",
        "| hub         |  1,562 |",
        "| bare \\| ref | 12,754 |",
    ]
    with pytest.raises(ValueError):
        report.markdown(["a", "b"], [["only one"]])


def test_table_of_records_and_render():
    records = [{"route": "GET /a", "hub": 10.0, "bare": 40.0}, {"route": "GET /b", "hub": 5.0}]
    table = report.Table.of(
        "Requests",
        [
            ("route", lambda r: r["route"]),
            ("hub/bare", lambda r: report.num(report.ratio(r["hub"], r.get("bare")))),
        ],
        records,
        notes=["a note", ""],
    )
    assert table.rows == [["GET /a", "0.25"], ["GET /b", "-"]]
    text = report.render([table])
    assert text.startswith("### Requests\n\n| route  | hub/bare |\n")
    assert text.endswith("\n\na note")


def test_write_rewrites_only_between_the_markers(tmp_path):
    doc = tmp_path / "performance.md"
    doc.write_text(
        "# Performance\n\nHand-written prose.\n\n"
        f"{report.BEGIN}\nold figures\nmore old figures\n{report.END}\n\nMore prose.\n"
    )
    about = {
        "cpu": "Test CPU",
        "cores": 2,
        "memory_gb": 4.0,
        "implementation": "CPython",
        "python": "3.11.7",
        "loop": "uvloop",
        "http": "httptools",
        "date": "2026-01-02",
    }
    table = report.Table("Figures", ["what", "value"], [["x", "1"]])
    report.write(doc, report.document([table], about, "python -m bench --only requests"))
    text = doc.read_text()
    assert text.startswith("# Performance\n\nHand-written prose.\n\n" + report.BEGIN + "\n")
    assert text.endswith(report.END + "\n\nMore prose.\n")
    generated = text.split(report.BEGIN)[1].split(report.END)[0]
    assert "old figures" not in text
    assert "Test CPU, 2 cores, 4 GB memory; CPython 3.11.7" in generated
    assert "2026-01-02" in generated and "python -m bench --only requests" in generated
    assert "| x    |     1 |" in generated
    report.write(doc, "second run")  # rerunning replaces the block again, nothing else
    assert doc.read_text() == (
        "# Performance\n\nHand-written prose.\n\n"
        f"{report.BEGIN}\nsecond run\n{report.END}\n\nMore prose.\n"
    )


def test_write_appends_the_markers_when_missing_and_refuses_broken_ones(tmp_path):
    doc = tmp_path / "performance.md"
    doc.write_text("# Performance\n")
    report.write(doc, "figures")
    assert doc.read_text() == (
        f"# Performance\n\n## Latest run\n\n{report.BEGIN}\nfigures\n{report.END}\n"
    )
    doc.write_text(f"{report.END}\n{report.BEGIN}\n")
    with pytest.raises(ValueError):
        report.write(doc, "figures")
