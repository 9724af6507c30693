"""Idempotency-Key records: claim a key, keep a successful answer for replay, expire."""

from __future__ import annotations

import datetime as dt

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


def settle(actor: str, key: str, captured: dict) -> None:
    """Keep a 2xx answer for replay; forget the key otherwise so the client may retry."""
    with write_transaction():
        if 200 <= captured["status"] < 300:
            IdempotencyRecord.update(
                status=captured["status"],
                headers=captured["headers"],
                body=captured["body"].decode("utf-8", "replace"),
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
