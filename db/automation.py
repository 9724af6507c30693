"""Triggers (event → action) and schedules (cron → action) with their runs."""

from __future__ import annotations

import peewee

from db.base import BaseModel, JSONField, Versioned, iso


class Trigger(Versioned, BaseModel):
    id = peewee.CharField(primary_key=True, max_length=40)
    name = peewee.CharField(max_length=200)
    event_type = peewee.CharField(max_length=200)
    filter = peewee.TextField(null=True)
    action = JSONField()
    enabled = peewee.BooleanField(default=True)
    fired_count = peewee.IntegerField(default=0)
    error_count = peewee.IntegerField(default=0)
    last_fired_at = peewee.DateTimeField(null=True)
    last_error = JSONField(null=True)
    version = peewee.IntegerField(default=1)
    created_at = peewee.DateTimeField()
    updated_at = peewee.DateTimeField()

    def to_api(self) -> dict:
        return {
            "id": self.id,
            "name": self.name,
            "event_type": self.event_type,
            "filter": self.filter,
            "action": self.action,
            "enabled": self.enabled,
            "fired_count": self.fired_count,
            "error_count": self.error_count,
            "last_fired_at": iso(self.last_fired_at),
            "last_error": self.last_error,
            "created_at": iso(self.created_at),
            "updated_at": iso(self.updated_at),
        }


class Schedule(Versioned, BaseModel):
    id = peewee.CharField(primary_key=True, max_length=40)
    name = peewee.CharField(max_length=200)
    cron = peewee.CharField(max_length=120)
    timezone = peewee.CharField(max_length=64)
    enabled = peewee.BooleanField(default=True)
    action = JSONField()
    next_run_at = peewee.DateTimeField(null=True, index=True)
    last_run_at = peewee.DateTimeField(null=True)
    version = peewee.IntegerField(default=1)
    created_at = peewee.DateTimeField()
    updated_at = peewee.DateTimeField()

    def to_api(self) -> dict:
        return {
            "id": self.id,
            "name": self.name,
            "cron": self.cron,
            "timezone": self.timezone,
            "enabled": self.enabled,
            "action": self.action,
            "next_run_at": iso(self.next_run_at) if self.enabled else None,
            "last_run_at": iso(self.last_run_at),
            "created_at": iso(self.created_at),
            "updated_at": iso(self.updated_at),
        }


class ScheduleRun(BaseModel):
    id = peewee.CharField(primary_key=True, max_length=40)
    schedule_id = peewee.CharField(max_length=40, index=True)
    trigger = peewee.CharField(max_length=16)
    scheduled_for = peewee.DateTimeField(null=True)
    started_at = peewee.DateTimeField()
    finished_at = peewee.DateTimeField(null=True)
    status = peewee.CharField(max_length=16)
    task_id = peewee.CharField(max_length=40, null=True)
    workflow_run_id = peewee.CharField(max_length=40, null=True)
    error = peewee.TextField(null=True)

    class Meta:
        table_name = "schedule_run"
        indexes = ((("schedule_id", "scheduled_for"), True),)

    def to_api(self) -> dict:
        return {
            "id": self.id,
            "schedule_id": self.schedule_id,
            "trigger": self.trigger,
            "scheduled_for": iso(self.scheduled_for),
            "started_at": iso(self.started_at),
            "finished_at": iso(self.finished_at),
            "status": self.status,
            "task_id": self.task_id,
            "workflow_run_id": self.workflow_run_id,
            "error": self.error,
        }


# --- queries -----------------------------------------------------------------------------


def get_trigger(trigger_id: str) -> Trigger | None:
    return Trigger.get_or_none(Trigger.id == trigger_id)


def triggers() -> peewee.Select:
    return Trigger.select()


def enabled_triggers() -> list[Trigger]:
    """Every enabled trigger, oldest first (the order they fire in for one event)."""
    return list(Trigger.select().where(Trigger.enabled == True).order_by(Trigger.id))  # noqa: E712


def get_schedule(schedule_id: str) -> Schedule | None:
    return Schedule.get_or_none(Schedule.id == schedule_id)


def schedules() -> peewee.Select:
    return Schedule.select()


def due(now) -> peewee.Select:
    """Enabled schedules whose next tick has come, the longest overdue first."""
    return (
        Schedule.select()
        .where(
            (Schedule.enabled == True)  # noqa: E712
            & Schedule.next_run_at.is_null(False)
            & (Schedule.next_run_at <= now)
        )
        .order_by(Schedule.next_run_at, Schedule.id)
    )


def nearest_run_at():
    """The soonest ``next_run_at`` of any enabled schedule (None when there is none)."""
    row = (
        Schedule.select(Schedule.next_run_at)
        .where((Schedule.enabled == True) & Schedule.next_run_at.is_null(False))  # noqa: E712
        .order_by(Schedule.next_run_at)
        .first()
    )
    return row.next_run_at if row else None


def runs(schedule_id: str) -> peewee.Select:
    return ScheduleRun.select().where(ScheduleRun.schedule_id == schedule_id)


def get_run(schedule_id: str, run_id: str) -> ScheduleRun | None:
    return runs(schedule_id).where(ScheduleRun.id == run_id).first()
