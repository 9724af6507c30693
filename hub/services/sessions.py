"""Sessions: create, rename, close and delete conversations, and grade their turns.

The turns themselves (a user message in, the agent's reply out) are ``hub.engine.turns``.
"""

from __future__ import annotations

from db import agents, sessions
from db.base import new_id, utcnow, write_transaction
from db.sessions import Message, Session, Turn
from hub.core import generations
from hub.core.problems import Conflict, Unprocessable, require
from hub.events import log as events
from hub.services import audit
from hub.services.etags import check_if_match


def create_session(agent_id: str, title: str, metadata: dict) -> Session:
    now = utcnow()
    with write_transaction():
        if agents.get(agent_id) is None:
            raise Unprocessable(f"No agent with id {agent_id!r}.", code="agent_not_found")
        session = Session.create(
            id=new_id("ses"),
            agent_id=agent_id,
            title=title,
            metadata=metadata,
            status="open",
            created_at=now,
            updated_at=now,
        )
        audit.created("sessions", session.id)
        return session


def update_session(session_id: str, changes: dict, *, if_match: str | None) -> Session:
    with write_transaction():
        session = require(sessions.get_session(session_id), "session", session_id)
        check_if_match(if_match, session.etag)
        if all(getattr(session, k) == v for k, v in changes.items()):
            return session
        for name, value in changes.items():
            setattr(session, name, value)
        session.version += 1
        session.updated_at = utcnow()
        session.save()
    return session


def close_session(session_id: str) -> Session:
    with write_transaction():
        session = require(sessions.get_session(session_id), "session", session_id)
        if session.status != "closed":
            session.status = "closed"
            session.closed_at = session.updated_at = utcnow()
            session.version += 1
            session.save()
            events.emit(
                "session.closed",
                subject=session.id,
                payload={
                    "session_id": session.id,
                    "agent_id": session.agent_id,
                    "message_count": session.message_count,
                },
            )
    return session


def delete_session(session_id: str) -> None:
    with write_transaction():
        session = require(sessions.get_session(session_id), "session", session_id)
        if generations.current().busy(session_id):
            raise Conflict(
                "A reply is being generated in this session; stop it first.",
                code="generation_in_progress",
            )
        Message.delete().where(Message.session_id == session_id).execute()
        Turn.delete().where(Turn.session_id == session_id).execute()
        session.delete_instance()


def put_feedback(turn_id: str, grade: int, comment: str) -> Turn:
    with write_transaction():
        turn = require(sessions.get_turn(turn_id), "turn", turn_id)
        turn.feedback_grade, turn.feedback_comment = grade, comment
        turn.feedback_at = utcnow()
        turn.save()
    return turn
