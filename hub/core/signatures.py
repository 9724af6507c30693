"""How each source signs its webhooks, checked in constant time (``hmac.compare_digest``).

- GitHub: ``X-Hub-Signature-256: sha256=<hex HMAC-SHA256(secret, raw body)>``;
- GitLab: ``X-Gitlab-Token: <secret>`` (the secret itself, no signature);
- generic: ``X-Signature-256: sha256=<hex HMAC-SHA256(secret, raw body)>``, GitHub's scheme.

Pure functions: no database, no settings. Header lookups take any case-insensitive mapping
(Starlette's ``Headers``) or a dict with lower-case names.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping

SIGNATURE_HEADER = {
    "github": "x-hub-signature-256",
    "gitlab": "x-gitlab-token",
    "generic": "x-signature-256",
}
EVENT_HEADER = {"github": "x-github-event", "gitlab": "x-gitlab-event", "generic": "x-event"}
DELIVERY_HEADER = {
    "github": "x-github-delivery",
    "gitlab": "x-gitlab-event-uuid",
    "generic": "x-delivery-id",
}


def sign(secret: str, body: bytes) -> str:
    """``sha256=`` + the hex HMAC-SHA256 of ``body`` under ``secret`` (GitHub's format)."""
    return "sha256=" + hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()


def _same(expected: str, given: str) -> bool:
    return hmac.compare_digest(expected.encode("utf-8"), given.encode("utf-8", "replace"))


def hmac_sha256_ok(secret: str, body: bytes, header: str | None) -> bool:
    """Whether ``header`` is ``sha256=<hex>`` for ``body`` under ``secret``."""
    if not header:
        return False
    given = header.strip()
    prefix, _, digest = given.partition("=")
    return _same(sign(secret, body), f"{prefix.lower()}={digest.lower()}")


def token_ok(secret: str, header: str | None) -> bool:
    """Whether ``header`` is the secret itself (GitLab's ``X-Gitlab-Token``)."""
    return bool(header) and _same(secret, header)


def verify(kind: str, secret: str, body: bytes, headers: Mapping[str, str]) -> bool:
    """Whether the delivery is signed the way ``kind`` (github, gitlab, generic) signs."""
    header = headers.get(SIGNATURE_HEADER[kind])
    if kind == "gitlab":
        return token_ok(secret, header)
    return hmac_sha256_ok(secret, body, header)


def event_name(kind: str, headers: Mapping[str, str]) -> str | None:
    return headers.get(EVENT_HEADER[kind]) or None


def delivery_id(kind: str, headers: Mapping[str, str], body: bytes) -> str:
    """The source's delivery id, or ``sha256:<hex of the body>`` when it sends none (so an
    identical resend is still recognised)."""
    given = headers.get(DELIVERY_HEADER[kind])
    return given if given else "sha256:" + hashlib.sha256(body).hexdigest()
