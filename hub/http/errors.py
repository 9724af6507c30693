"""Error handlers registered on Connexion: every error leaves as application/problem+json."""

from __future__ import annotations

import logging

from connexion.exceptions import (
    BadRequestProblem,
    ExtraParameterProblem,
    NonConformingResponse,
    ProblemException,
    UnsupportedMediaTypeProblem,
)
from connexion.lifecycle import ConnexionRequest, ConnexionResponse
from starlette.exceptions import HTTPException

from db.base import DatabaseUnavailable
from db.pagination import InvalidCursor
from hub.core import problems, spec
from hub.core.problems import Problem

log = logging.getLogger("aether.error")


def _request_id(request: ConnexionRequest) -> str:
    return request.scope.get("aether", {}).get("request_id", "")


def render(request: ConnexionRequest, problem: Problem) -> ConnexionResponse:
    body, media_type = problems.render(problem, _request_id(request), request.scope["path"])
    return ConnexionResponse(
        status_code=problem.status,
        mimetype=media_type,
        content_type=media_type,
        body=body,
        headers=problem.headers,
    )


def handle_problem(request: ConnexionRequest, exc: Problem) -> ConnexionResponse:
    return render(request, exc)


def handle_connexion_problem(request: ConnexionRequest, exc: ProblemException) -> ConnexionResponse:
    detail = exc.detail or exc.title or ""
    if isinstance(exc, NonConformingResponse):
        log.error(
            "response does not conform to the contract: %s",
            detail,
            extra={"request_id": _request_id(request)},
        )
        return render(request, problems.InternalError("The response broke the contract."))
    if isinstance(exc, UnsupportedMediaTypeProblem):
        problem = problems.UnsupportedMediaType(detail)
    elif isinstance(exc, (ExtraParameterProblem, BadRequestProblem)):
        problem = problems.ValidationFailed(detail)
    else:
        problem = problems.for_status(exc.status, detail)
    problem.headers.update(exc.headers or {})
    return render(request, problem)


def handle_http_exception(request: ConnexionRequest, exc: HTTPException) -> ConnexionResponse:
    path, method = request.scope.get("path", ""), request.scope.get("method", "")
    if exc.status_code == 404:
        problem: Problem = problems.NotFound(f"Nothing at {method} {path}.", code="route_not_found")
    elif exc.status_code == 405:
        allowed = spec.allowed_methods(path)
        problem = problems.MethodNotAllowed(
            f"{method} is not allowed on {path}; allowed: {', '.join(allowed)}.",
            headers={"Allow": ", ".join(allowed)},
        )
    else:
        problem = problems.for_status(exc.status_code, str(exc.detail))
        problem.headers.update(exc.headers or {})
    return render(request, problem)


def handle_unexpected(request: ConnexionRequest, exc: Exception) -> ConnexionResponse:
    log.error("unhandled error", exc_info=exc, extra={"request_id": _request_id(request)})
    return render(
        request,
        problems.InternalError("Unexpected error; quote the request_id when reporting it."),
    )


def handle_invalid_cursor(request: ConnexionRequest, exc: InvalidCursor) -> ConnexionResponse:
    return render(
        request,
        problems.ValidationFailed(
            "The cursor is not one this server issued.",
            errors=[{"field": "query.cursor", "message": "invalid cursor"}],
        ),
    )


def handle_database_unavailable(
    request: ConnexionRequest, exc: DatabaseUnavailable
) -> ConnexionResponse:
    log.warning("the database is unavailable: %s", exc, extra={"request_id": _request_id(request)})
    return render(
        request,
        problems.ServiceUnavailable(
            "The database cannot be reached just now; try again shortly.",
            code="database_unavailable",
            headers={"Retry-After": "1"},
        ),
    )


def register(app) -> None:
    app.add_error_handler(Problem, handle_problem)
    app.add_error_handler(DatabaseUnavailable, handle_database_unavailable)
    app.add_error_handler(InvalidCursor, handle_invalid_cursor)
    app.add_error_handler(ProblemException, handle_connexion_problem)
    app.add_error_handler(HTTPException, handle_http_exception)
    app.add_error_handler(Exception, handle_unexpected)
