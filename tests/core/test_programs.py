"""User programs run bounded and apart (``hub.core.programs``): a jq filter or a template that
spins is stopped at its limit in its own process, the worker is replaced, and the hub's
process never runs a line of it."""

from __future__ import annotations

import os
import threading

import pytest

from hub.core import programs
from hub.settings import Settings, install

JQ_BOMB = "last(range(1e13)) > 0"
JINJA_BOMB = "{% for a in range(100000) %}{% for b in range(100000) %}{% endfor %}{% endfor %}"


@pytest.fixture(autouse=True)
def limits():
    install(Settings(program_timeout_ms=200, program_workers=2))


def test_a_filter_matches_the_jq_way():
    assert programs.jq_matches('.action == "opened"', {"action": "opened"}) is True
    assert programs.jq_matches(".labels | length > 0", {"labels": []}) is False
    assert programs.jq_matches(".missing", {}) is False  # null
    assert programs.jq_matches("empty", {}) is False  # no output at all
    assert programs.jq_matches(".n", {"n": 0}) is True  # 0 is truthy in jq


def test_a_template_renders_in_the_sandbox():
    assert programs.render("Fix {{ e.title }}!", {"e": {"title": "it"}}, 100) == "Fix it!"
    with pytest.raises(programs.ProgramError) as failed:
        programs.render("{{ ''.__class__.__mro__ }}", {}, 100)
    assert failed.value.reason == "runtime"
    with pytest.raises(programs.ProgramError) as failed:
        programs.render("{{ 'x' * 1000000 }}", {}, 10**7)
    assert "repetition" in str(failed.value)


def test_compile_errors_name_what_is_wrong():
    with pytest.raises(programs.ProgramError) as failed:
        programs.check_jq(".a ==")
    assert failed.value.reason == "compile"
    assert "syntax error" in str(failed.value)
    with pytest.raises(programs.ProgramError) as failed:
        programs.check_template("line one\n{{ x }")
    assert (failed.value.reason, failed.value.line) == ("compile", 2)
    programs.check_jq(".a == 1")
    programs.check_template("{{ x }}")


@pytest.mark.parametrize(
    "run",
    [
        lambda: programs.jq_matches(JQ_BOMB, {}),
        lambda: programs.render(JINJA_BOMB, {}, 1000),
    ],
    ids=["jq", "jinja"],
)
def test_a_program_that_spins_is_stopped_and_its_worker_replaced(run):
    pids_before = programs._pool.worker_pids()
    with pytest.raises(programs.ProgramError) as failed:
        run()
    assert failed.value.reason == "timeout"
    assert "200 ms limit" in str(failed.value)
    killed = set(pids_before) - set(programs._pool.worker_pids())
    for pid in killed:  # the spinning worker is gone, not left running
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
    assert programs.jq_matches(".ok", {"ok": True}) is True  # a fresh worker answers


def test_output_and_memory_are_bounded():
    with pytest.raises(programs.ProgramError) as failed:
        programs.render("{% for i in range(1000) %}0123456789{% endfor %}", {}, 5000)
    assert failed.value.reason == "too_large"
    install(Settings(program_timeout_ms=5000, program_memory_mb=64))
    programs.close()  # new workers start under the smaller memory limit
    with pytest.raises(programs.ProgramError) as failed:
        programs.jq_matches("[range(1e8)] | length > 0", {})
    assert failed.value.reason in ("memory", "runtime"), failed.value
    install(Settings())
    programs.close()
    assert programs.jq_matches(".", True) is True


def test_the_pool_serves_threads_at_once_within_its_size():
    install(Settings(program_timeout_ms=200, program_workers=2))
    results: list = []

    def call(index: int) -> None:
        results.append(programs.jq_matches(f". == {index}", index))

    threads = [threading.Thread(target=call, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == [True] * 8
    assert len(programs._pool.worker_pids()) <= 2


def test_a_program_is_refused_where_the_app_forbids_it():
    """The app refuses programs inside a write transaction (``hub.app.build_runtime``)."""
    blocked = [True]

    def refused() -> bool:
        return blocked[0]

    programs.refuse_when(refused, "in this test")
    try:
        with pytest.raises(RuntimeError, match="in this test"):
            programs.jq_matches(".", True)
    finally:
        programs._refusals.remove((refused, "in this test"))
