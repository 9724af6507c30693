"""Idempotency-Key records: claim a key, keep a successful answer for replay, expire.

A record never holds a secret: members of the answer the contract marks ``x-aether-secret``
(an API key's ``secret``) are kept as ``null``, with a ``notice`` that the secret was shown
once. A replay answers the same resource without it."""

from __future__ import annotations

import datetime as dt
import json

import peewee

from db import system
from db.base import database, utcnow, write_transaction
from db.system import IdempotencyRecord

TTL = dt.timedelta(hours=24)  # how long an answer can be replayed


def _same(actor: str, key: str):
    return (IdempotencyRecord.actor == actor) & (IdempotencyRecord.key == key)


def claim(actor: str, key: str, operation_id: str, request_hash: str) -> IdempotencyRecord | None:
    """Insert an in-progress record; return the live one when the key was seen before."""
    now = utcnow()
    with write_transaction():
        IdempotencyRecord.delete().where(
            _same(actor, key) & (IdempotencyRecord.created_at < now - TTL)
        ).execute()
        try:
            with database.atomic():  # a savepoint: a duplicate must not abort the transaction
                IdempotencyRecord.create(
                    actor=actor,
                    key=key,
                    operation_id=operation_id,
                    request_hash=request_hash,
                    created_at=now,
                )
        except peewee.IntegrityError:
            return system.idempotency_record(actor, key)
    return None


WITHHELD = (
    "The secret was shown once, in the first answer to this request; the hub keeps only its "
    "hash, so a replay cannot show it again."
)


def without_secrets(body: bytes, secret_fields: tuple[str, ...]) -> str:
    """The answer as it may be kept: ``secret_fields`` set to null (with ``notice``)."""
    text = body.decode("utf-8", "replace")
    if not secret_fields:
        return text
    try:
        answer = json.loads(text)
    except ValueError:
        return ""  # not the JSON the contract promises: keep nothing rather than a secret
    if isinstance(answer, dict) and any(answer.get(name) is not None for name in secret_fields):
        answer.update(dict.fromkeys(secret_fields), notice=WITHHELD)
    return json.dumps(answer, separators=(",", ":"))


def settle(actor: str, key: str, captured: dict, secret_fields: tuple[str, ...] = ()) -> None:
    """Keep a 2xx answer for replay (without its secrets); forget the key otherwise so the
    client may retry."""
    with write_transaction():
        if 200 <= captured["status"] < 300:
            IdempotencyRecord.update(
                status=captured["status"],
                headers=captured["headers"],
                body=without_secrets(captured["body"], secret_fields),
            ).where(_same(actor, key)).execute()
        else:
            IdempotencyRecord.delete().where(_same(actor, key)).execute()


def prune() -> int:
    """Delete records past their replay window; returns how many."""
    with write_transaction():
        return (
            IdempotencyRecord.delete()
            .where(IdempotencyRecord.created_at < utcnow() - TTL)
            .execute()
        )
