"""jq filters: a filter matches when its first output is truthy the jq way (anything but
``false`` and ``null``), so both ``.action == "opened"`` and ``select(.issue.labels | length >
0)`` work; no output at all does not match. Filters are user programs: they compile and run
in ``hub.core.programs``' worker processes, bounded in time and memory."""

from __future__ import annotations

from hub.core import programs
from hub.core.problems import Unprocessable


class FilterError(Exception):
    """A filter that does not compile, fails on a value or runs past its limits."""


def compile_filter(program: str, field: str = "body.filter") -> None:
    """Nothing when ``program`` compiles; a 422 naming ``field`` when it does not."""
    try:
        programs.check_jq(program)
    except programs.ProgramError as exc:
        message = str(exc) if exc.reason == "compile" else f"it cannot be compiled: {exc}"
        raise Unprocessable(
            f"The jq filter does not compile: {message}",
            code="invalid_filter",
            errors=[{"field": field, "message": message}],
        ) from None


def matches(program: str | None, value) -> bool:
    """Whether ``program``'s first output is truthy for ``value`` (no program: always).
    Raises ``FilterError`` when the program fails to compile, to run, or within its limits.
    Never call it inside a write transaction: it may take the whole time limit."""
    if not program:
        return True
    try:
        return programs.jq_matches(program, value)
    except programs.ProgramError as exc:
        raise FilterError(str(exc)) from None
