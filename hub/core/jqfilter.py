"""jq filters (the ``jq`` package): compiled once; a filter matches when its first output is
truthy the jq way (anything but ``false`` and ``null``), so both ``.action == "opened"`` and
``select(.issue.labels | length > 0)`` work; no output at all does not match."""

from __future__ import annotations

import functools

import jq

from hub.core.problems import Unprocessable


class FilterError(Exception):
    """A filter that does not compile or fails on a value."""


@functools.lru_cache(maxsize=512)
def _compiled(program: str):
    return jq.compile(program)


def compile_filter(program: str, field: str = "body.filter"):
    """The compiled program, or a 422 naming ``field`` when it does not compile."""
    try:
        return _compiled(program)
    except ValueError as exc:
        raise Unprocessable(
            f"The jq filter does not compile: {exc}",
            code="invalid_filter",
            errors=[{"field": field, "message": str(exc)}],
        ) from None


def matches(program: str | None, value) -> bool:
    """Whether ``program``'s first output is truthy for ``value`` (no program: always).
    Raises ``FilterError`` when the program fails to compile or to run."""
    if not program:
        return True
    try:
        outputs = _compiled(program).input_value(value).all()
    except ValueError as exc:
        raise FilterError(str(exc)) from None
    return bool(outputs) and outputs[0] is not None and outputs[0] is not False
