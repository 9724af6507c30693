"""Assertions shared by the handler and runtime tests."""

from __future__ import annotations

import re

PROBLEM_KEYS = {"type", "title", "status", "detail", "code", "request_id"}


def assert_problem(response, status: int, code: str | None = None) -> dict:
    """The answer is an application/problem+json with every required member, and no internals."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    assert set(body) >= PROBLEM_KEYS, body
    assert set(body) <= PROBLEM_KEYS | {"errors"}, body
    assert body["status"] == status
    if code is not None:
        assert body["code"] == code
    assert body["request_id"] == response.headers["x-request-id"]
    assert body["type"].startswith("https://") and body["title"] and body["detail"]
    assert "Traceback" not in response.text
    return body


def error_fields(response) -> set[str]:
    """The fields a validation problem names."""
    return {error["field"] for error in response.json().get("errors", [])}


class Matches:
    """Equal to any string matching ``pattern`` (for server-made values in whole bodies)."""

    def __init__(self, pattern: str) -> None:
        self.pattern = re.compile(pattern)

    def __eq__(self, other) -> bool:
        return isinstance(other, str) and self.pattern.fullmatch(other) is not None

    def __repr__(self) -> str:
        return f"Matches({self.pattern.pattern!r})"


TRACE_ID = Matches("[0-9a-f]{32}")
