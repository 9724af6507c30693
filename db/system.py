"""Runtime state shared by hub instances: instances, config overrides, idempotency records."""

from __future__ import annotations

import datetime as dt

import peewee

from db.base import BaseModel, JSONField, iso


class Instance(BaseModel):
    id = peewee.CharField(primary_key=True, max_length=40)
    name = peewee.CharField(max_length=200)
    hostname = peewee.CharField(max_length=255)
    pid = peewee.IntegerField()
    version = peewee.CharField(max_length=40)
    started_at = peewee.DateTimeField()
    heartbeat_at = peewee.DateTimeField(index=True)
    draining = peewee.BooleanField(default=False)
    stopped_at = peewee.DateTimeField(null=True)
    workers = peewee.IntegerField(default=0)
    busy_workers = peewee.IntegerField(default=0)

    def to_api(self, *, now: dt.datetime, stale_after: float, current: str) -> dict:
        age = (now - self.heartbeat_at).total_seconds()
        if self.stopped_at is not None:
            state = "stopped"
        elif age > stale_after:
            state = "stale"
        else:
            state = "draining" if self.draining else "running"
        return {
            "id": self.id,
            "name": self.name,
            "hostname": self.hostname,
            "pid": self.pid,
            "version": self.version,
            "started_at": iso(self.started_at),
            "heartbeat_at": iso(self.heartbeat_at),
            "state": state,
            "current": self.id == current,
        }


class ConfigOverride(BaseModel):
    key = peewee.CharField(primary_key=True, max_length=64)
    value = JSONField()
    updated_at = peewee.DateTimeField()


class IdempotencyRecord(BaseModel):
    id = peewee.BigAutoField()
    actor = peewee.CharField(max_length=40)
    key = peewee.CharField(max_length=255)
    operation_id = peewee.CharField(max_length=100)
    request_hash = peewee.CharField(max_length=64)
    status = peewee.IntegerField(null=True)
    headers = JSONField(null=True)
    body = peewee.TextField(null=True)
    created_at = peewee.DateTimeField(index=True)

    class Meta:
        indexes = ((("actor", "key"), True),)


def instances() -> peewee.Select:
    return Instance.select()


def overrides() -> dict:
    return {row.key: row.value for row in ConfigOverride.select()}


def idempotency_record(actor: str, key: str) -> IdempotencyRecord | None:
    return (
        IdempotencyRecord.select()
        .where((IdempotencyRecord.actor == actor) & (IdempotencyRecord.key == key))
        .first()
    )
