"""Optimistic concurrency: every versioned resource checks ``If-Match`` the same way."""

from __future__ import annotations

from hub.core.problems import PreconditionFailed


def check_if_match(if_match: str | None, etag: str) -> None:
    """Raise 412 unless ``If-Match`` is absent, ``*`` or lists ``etag`` (weak or strong)."""
    if if_match is None:
        return
    candidates = [part.strip() for part in if_match.split(",")]
    for candidate in candidates:
        if candidate == "*" or candidate.removeprefix("W/") == etag:
            return
    raise PreconditionFailed(
        f"If-Match {if_match!r} does not match the current ETag {etag}.",
        code="etag_mismatch",
    )
