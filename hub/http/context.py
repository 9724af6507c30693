"""What a handler may know about the request it serves (set by the middleware)."""

from __future__ import annotations

from connexion import request

from hub.services.auth import Principal


def principal() -> Principal | None:
    return request.scope.get("aether", {}).get("principal")


def actor_id() -> str | None:
    current = principal()
    return current.key_id if current else None


def header(name: str) -> str | None:
    return request.headers.get(name)


def base_url() -> str:
    return str(request.base_url).rstrip("/")


def is_viewer() -> bool:
    """Whether the caller may only read (a viewer key): some details are redacted for it."""
    current = principal()
    return current is not None and not current.allows("operator")


def for_caller(answer, redact):
    """``answer`` as the caller may see it: through ``redact`` for a viewer."""
    return redact(answer) if is_viewer() else answer
