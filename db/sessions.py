"""Conversations: sessions, messages and turns, and the queries over them."""

from __future__ import annotations

import peewee

from db.base import BaseModel, JSONField, Prepared, Versioned, duration_ms, iso
from db.tasks import steps as steps_of


class Session(Versioned, BaseModel):
    id = peewee.CharField(primary_key=True, max_length=40)
    agent_id = peewee.CharField(max_length=64, index=True)
    title = peewee.TextField(default="")
    metadata = JSONField(default=dict)
    status = peewee.CharField(max_length=16, index=True)
    message_count = peewee.IntegerField(default=0)
    version = peewee.IntegerField(default=1)
    created_at = peewee.DateTimeField()
    updated_at = peewee.DateTimeField()
    closed_at = peewee.DateTimeField(null=True)

    def to_api(self) -> dict:
        return {
            "id": self.id,
            "agent_id": self.agent_id,
            "title": self.title,
            "metadata": self.metadata,
            "status": self.status,
            "message_count": self.message_count,
            "version": self.version,
            "created_at": iso(self.created_at),
            "updated_at": iso(self.updated_at),
            "closed_at": iso(self.closed_at),
        }


class Message(BaseModel):
    id = peewee.CharField(primary_key=True, max_length=40)
    session_id = peewee.CharField(max_length=40, index=True)
    role = peewee.CharField(max_length=16)
    content = peewee.TextField()
    status = peewee.CharField(max_length=16)
    turn_id = peewee.CharField(max_length=40, null=True)
    created_at = peewee.DateTimeField()

    def to_api(self) -> dict:
        return {
            "id": self.id,
            "session_id": self.session_id,
            "role": self.role,
            "content": self.content,
            "status": self.status,
            "turn_id": self.turn_id,
            "created_at": iso(self.created_at),
        }


class Turn(BaseModel):
    id = peewee.CharField(primary_key=True, max_length=40)
    session_id = peewee.CharField(max_length=40, index=True)
    agent_id = peewee.CharField(max_length=64, index=True)
    agent_config_version = peewee.IntegerField()
    user_message_id = peewee.CharField(max_length=40)
    assistant_message_id = peewee.CharField(max_length=40, null=True)
    provider = peewee.CharField(max_length=64)
    model = peewee.CharField(max_length=200)
    status = peewee.CharField(max_length=16)
    finish_reason = peewee.CharField(max_length=32, null=True)
    prompt_tokens = peewee.IntegerField(default=0)
    completion_tokens = peewee.IntegerField(default=0)
    latency_ms = peewee.FloatField(null=True)
    ttft_ms = peewee.FloatField(null=True)
    context = JSONField()
    error = JSONField(null=True)
    approval_id = peewee.CharField(max_length=40, null=True)
    loop_state = JSONField(null=True)
    memories = JSONField(null=True)
    skills = JSONField(null=True)  # {"offered": [...], "loaded": [...]}: hub.engine.disclosure
    trace_id = peewee.CharField(max_length=64, null=True, index=True)
    created_at = peewee.DateTimeField()
    completed_at = peewee.DateTimeField(null=True)
    instance_id = peewee.CharField(max_length=40, null=True)  # who generates it while running
    feedback_grade = peewee.SmallIntegerField(null=True)
    feedback_comment = peewee.TextField(null=True)
    feedback_at = peewee.DateTimeField(null=True)

    def to_api(self) -> dict:
        return {
            "id": self.id,
            "session_id": self.session_id,
            "agent_id": self.agent_id,
            "agent_config_version": self.agent_config_version,
            "user_message_id": self.user_message_id,
            "assistant_message_id": self.assistant_message_id,
            "provider": self.provider,
            "model": self.model,
            "status": self.status,
            "finish_reason": self.finish_reason,
            "usage": {
                "prompt_tokens": self.prompt_tokens,
                "completion_tokens": self.completion_tokens,
                "total_tokens": self.prompt_tokens + self.completion_tokens,
            },
            "latency_ms": self.latency_ms,
            "time_to_first_token_ms": self.ttft_ms,
            "context": self.context,
            "error": self.error,
            "approval_id": self.approval_id,
            "memories_used": self.memories or [],
            "skills": self.skills or {"offered": [], "loaded": []},
            "steps": [step.to_api() for step in steps_of(self.id)],
            "trace_id": self.trace_id,
            "created_at": iso(self.created_at),
            "completed_at": iso(self.completed_at),
            "duration_ms": duration_ms(self.created_at, self.completed_at),
        }

    def feedback_to_api(self) -> dict:
        return {
            "turn_id": self.id,
            "grade": self.feedback_grade,
            "comment": self.feedback_comment or "",
            "updated_at": iso(self.feedback_at),
        }


_session_by_id = Prepared(Session, lambda sid: Session.select().where(Session.id == sid))


def get_session(session_id: str) -> Session | None:
    return _session_by_id.first(session_id)


def get_turn(turn_id: str) -> Turn | None:
    return Turn.get_or_none(Turn.id == turn_id)


def get_message(session_id: str, message_id: str) -> Message | None:
    return (
        Message.select()
        .where((Message.session_id == session_id) & (Message.id == message_id))
        .first()
    )


def sessions(*, agent_id: str | None = None, status: str | None = None) -> peewee.Select:
    query = Session.select()
    if agent_id:
        query = query.where(Session.agent_id == agent_id)
    if status:
        query = query.where(Session.status == status)
    return query


def messages(session_id: str) -> peewee.Select:
    return Message.select().where(Message.session_id == session_id)


def turns(session_id: str) -> peewee.Select:
    return Turn.select().where(Turn.session_id == session_id)


def history(session_id: str, *, before: str | None = None) -> list[Message]:
    """The complete user/assistant messages of a session, oldest first (before an id)."""
    query = messages(session_id).where(Message.status != "streaming")
    if before is not None:
        query = query.where(Message.id < before)
    return list(query.order_by(Message.id.asc()))


def last_turn(session_id: str) -> Turn | None:
    return turns(session_id).order_by(Turn.id.desc()).first()


def running_turn_owners() -> set[str]:
    """The instances generating the turns now ``running``."""
    rows = Turn.select(Turn.instance_id).where(
        (Turn.status == "running") & Turn.instance_id.is_null(False)
    )
    return {row.instance_id for row in rows.distinct()}
