"""Schedules: a cron expression in a time zone starts an action; runs history."""

from __future__ import annotations

from db import automation
from db.automation import Schedule, ScheduleRun
from db.pagination import list_page
from generated.models import ScheduleCreate, SchedulePatch
from handlers import body_fields
from hub.http import context
from hub.services import schedules


def list_schedules(limit=50, cursor=None):
    """List schedules, newest first."""
    return list_page(
        automation.schedules(), Schedule.id, limit=limit, cursor=cursor, descending=True
    ), 200


def create_schedule(body):
    """Create a schedule."""
    schedule = schedules.create(body_fields(ScheduleCreate, body))
    headers = {"Location": f"/api/v1/schedules/{schedule.id}", "ETag": schedule.etag}
    return schedule.to_api(), 201, headers


def get_schedule(schedule_id):
    """One schedule."""
    schedule = schedules.get(schedule_id)
    return schedule.to_api(), 200, {"ETag": schedule.etag}


def update_schedule(schedule_id, body):
    """Change some of a schedule's fields."""
    schedule = schedules.update(
        schedule_id, body_fields(SchedulePatch, body), if_match=context.header("If-Match")
    )
    return schedule.to_api(), 200, {"ETag": schedule.etag}


def delete_schedule(schedule_id):
    """Delete a schedule."""
    schedules.delete(schedule_id)
    return None, 204


def run_schedule(schedule_id):
    """Run a schedule's action now."""
    run = schedules.run_now(schedule_id)
    return run.to_api(), 201, {"Location": f"/api/v1/schedules/{schedule_id}/runs/{run.id}"}


def get_schedule_run(schedule_id, run_id):
    """One run of a schedule."""
    return schedules.get_run(schedule_id, run_id).to_api(), 200


def list_schedule_runs(schedule_id, limit=50, cursor=None):
    """A schedule's runs, newest first."""
    schedules.get(schedule_id)
    return list_page(
        automation.runs(schedule_id), ScheduleRun.id, limit=limit, cursor=cursor, descending=True
    ), 200
