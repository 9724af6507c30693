"""Problem types: every error the hub answers is one of these, as application/problem+json.

Each class fixes its HTTP status, a stable snake_case ``code`` and a ``type`` URI, so a
status is decided in exactly one place. Domain errors subclass them.
"""

from __future__ import annotations

import json
from typing import Any

TYPE_BASE = "https://aether-hub.dev/problems/"
PROBLEM_JSON = "application/problem+json"


class Problem(Exception):
    status = 500
    code = "internal_error"
    title = "Internal Server Error"

    def __init__(
        self,
        detail: str | None = None,
        *,
        errors: list[dict[str, str]] | None = None,
        headers: dict[str, str] | None = None,
        code: str | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(detail or self.title)
        self.detail = detail or self.title
        self.errors = errors
        self.headers = headers or {}
        if code:
            self.code = code
        self.extra = extra

    def to_dict(self, request_id: str | None) -> dict[str, Any]:
        body: dict[str, Any] = {
            "type": TYPE_BASE + self.code.replace("_", "-"),
            "title": self.title,
            "status": self.status,
            "detail": self.detail,
            "code": self.code,
            "request_id": request_id or "",
        }
        if self.errors:
            body["errors"] = self.errors
        body.update(self.extra)
        return body


class BadRequest(Problem):
    status, code, title = 400, "bad_request", "Bad Request"


class ValidationFailed(BadRequest):
    code = "validation_error"


class Unauthorized(Problem):
    status, code, title = 401, "unauthorized", "Unauthorized"

    def __init__(self, detail: str | None = None, **kw: Any) -> None:
        kw.setdefault("headers", {"WWW-Authenticate": 'Bearer realm="aether"'})
        super().__init__(detail or "Missing or invalid API key.", **kw)


class Forbidden(Problem):
    status, code, title = 403, "forbidden", "Forbidden"


class NotFound(Problem):
    status, code, title = 404, "not_found", "Not Found"


class MethodNotAllowed(Problem):
    status, code, title = 405, "method_not_allowed", "Method Not Allowed"


class NotAcceptable(Problem):
    status, code, title = 406, "not_acceptable", "Not Acceptable"


class Conflict(Problem):
    status, code, title = 409, "conflict", "Conflict"


class PreconditionFailed(Problem):
    status, code, title = 412, "precondition_failed", "Precondition Failed"


class PayloadTooLarge(Problem):
    status, code, title = 413, "payload_too_large", "Payload Too Large"


class UnsupportedMediaType(Problem):
    status, code, title = 415, "unsupported_media_type", "Unsupported Media Type"


class Unprocessable(Problem):
    status, code, title = 422, "unprocessable", "Unprocessable Entity"


class ConfirmationRequired(Problem):
    status, code, title = 428, "confirmation_required", "Confirmation Required"


class RateLimited(Problem):
    status, code, title = 429, "rate_limited", "Too Many Requests"


class InternalError(Problem):
    status, code, title = 500, "internal_error", "Internal Server Error"


class ProviderError(Problem):
    status, code, title = 502, "provider_error", "Bad Gateway"


class ServiceUnavailable(Problem):
    """A 503 always says when to try again: ``Retry-After`` (1 s unless the raiser knows)."""

    status, code, title = 503, "unavailable", "Service Unavailable"

    def __init__(self, detail: str | None = None, **kw: Any) -> None:
        kw["headers"] = {"Retry-After": "1", **(kw.get("headers") or {})}
        super().__init__(detail, **kw)


class ProviderTimeout(Problem):
    status, code, title = 504, "provider_timeout", "Gateway Timeout"


OPENAI_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    409: "invalid_request_error",
    413: "invalid_request_error",
    415: "invalid_request_error",
    422: "invalid_request_error",
    429: "rate_limit_error",
}


def openai_error(problem: Problem, request_id: str | None) -> dict[str, Any]:
    """The problem in OpenAI's error shape, for the OpenAI-compatible ``/v1`` paths."""
    param = problem.errors[0]["field"].split(".", 1)[-1] if problem.errors else None
    return {
        "error": {
            "message": problem.detail,
            "type": OPENAI_TYPES.get(problem.status, "api_error"),
            "param": param,
            "code": problem.code,
            "request_id": request_id or "",
        }
    }


def render(problem: Problem, request_id: str | None, path: str) -> tuple[bytes, str]:
    """(body, media type) of a problem: OpenAI's error shape under ``/v1/``, else RFC 9457."""
    if path.startswith("/v1/"):
        return json.dumps(openai_error(problem, request_id)).encode(), "application/json"
    return json.dumps(problem.to_dict(request_id)).encode(), PROBLEM_JSON


BY_STATUS: dict[int, type[Problem]] = {
    cls.status: cls
    for cls in (
        BadRequest,
        Unauthorized,
        Forbidden,
        NotFound,
        MethodNotAllowed,
        NotAcceptable,
        Conflict,
        PreconditionFailed,
        PayloadTooLarge,
        UnsupportedMediaType,
        Unprocessable,
        ConfirmationRequired,
        RateLimited,
        InternalError,
        ProviderError,
        ServiceUnavailable,
        ProviderTimeout,
    )
}


def for_status(status: int, detail: str | None = None, **kw: Any) -> Problem:
    """A problem instance for a bare HTTP status (from the framework)."""
    cls = BY_STATUS.get(status)
    if cls is None:
        problem = Problem(detail, **kw)
        problem.status = status
        problem.code = "http_" + str(status)
        problem.title = "Error"
        return problem
    return cls(detail, **kw)


def require(obj, kind: str, ident) -> Any:
    """Return ``obj`` or raise NotFound naming the missing resource."""
    if obj is None:
        raise NotFound(f"No {kind} with id {ident!r}.", code=f"{kind}_not_found")
    return obj
