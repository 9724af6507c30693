"""Dead letters: tasks that ran out of attempts (and, later, failed deliveries)."""

from __future__ import annotations

import peewee

from db.base import BaseModel, JSONField, iso

KINDS = ("task", "delivery")


class DeadLetter(BaseModel):
    id = peewee.CharField(primary_key=True, max_length=40)
    kind = peewee.CharField(max_length=16)
    subject_id = peewee.CharField(max_length=40, index=True)
    status = peewee.CharField(max_length=16, index=True)
    reason = peewee.TextField()
    error = JSONField(null=True)
    attempts = peewee.IntegerField()
    created_at = peewee.DateTimeField()
    resolved_at = peewee.DateTimeField(null=True)

    class Meta:
        table_name = "dead_letter"

    def to_api(self) -> dict:
        return {
            "id": self.id,
            "kind": self.kind,
            "subject_id": self.subject_id,
            "status": self.status,
            "reason": self.reason,
            "error": self.error,
            "attempts": self.attempts,
            "created_at": iso(self.created_at),
            "resolved_at": iso(self.resolved_at),
        }


def get(dead_letter_id: str) -> DeadLetter | None:
    return DeadLetter.get_or_none(DeadLetter.id == dead_letter_id)


def dead_letters(*, kind: str | None = None, status: str | None = None) -> peewee.Select:
    query = DeadLetter.select()
    if kind:
        query = query.where(DeadLetter.kind == kind)
    if status:
        query = query.where(DeadLetter.status == status)
    return query


def open_for(subject_id: str) -> DeadLetter | None:
    return (
        DeadLetter.select()
        .where((DeadLetter.subject_id == subject_id) & (DeadLetter.status == "open"))
        .first()
    )


def depth() -> dict:
    rows = (
        DeadLetter.select(DeadLetter.kind, peewee.fn.COUNT(DeadLetter.id))
        .where(DeadLetter.status == "open")
        .group_by(DeadLetter.kind)
        .tuples()
    )
    by_kind = dict.fromkeys(KINDS, 0)
    by_kind.update(dict(rows))
    return {"open": sum(by_kind.values()), "by_kind": by_kind}
