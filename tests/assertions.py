"""Assertions shared by the handler and runtime tests."""

from __future__ import annotations

import functools
import re

from hub.core import spec

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


# Headers the hub sends on some answers, each declared in the contract where it is sent.
DECLARED_HEADERS = (
    "etag",
    "idempotent-replayed",
    "location",
    "retry-after",
    "www-authenticate",
    "x-request-id",
)


@functools.cache
def declared_headers(method: str, path: str, status: int) -> frozenset[str] | None:
    """The headers the contract declares for this answer (lowercased); None when it does not
    describe the answer: no operation there, or an undeclared status."""
    resolved = spec.resolve_path(path)
    if resolved is None:
        return None
    document = spec.load()
    operation = document["paths"][resolved[0]].get(method.lower())
    response = (operation or {}).get("responses", {}).get(str(status))
    if response is None:
        return None
    while "$ref" in response:
        response = document["components"]["responses"][response["$ref"].rsplit("/", 1)[-1]]
    return frozenset(name.lower() for name in response.get("headers") or {})


def assert_headers_declared(response) -> None:
    """Every header of DECLARED_HEADERS the answer carries is declared for it in the contract
    (the ``client`` and ``anon`` fixtures run it on every response: what the hub sends, its
    contract says; ``tools/check_spec.py`` checks the other direction)."""
    request = response.request
    declared = declared_headers(request.method, request.url.path, response.status_code)
    if declared is None:
        return
    sent = {name.lower() for name in response.headers} & set(DECLARED_HEADERS)
    undeclared = sorted(sent - declared)
    assert not undeclared, (
        f"{request.method} {request.url.path} answered {response.status_code} with "
        f"{', '.join(undeclared)}, which the contract does not declare there"
    )
