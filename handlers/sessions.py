"""Conversations with an agent, their messages and turns; streaming replies."""

from __future__ import annotations

from starlette.concurrency import run_in_threadpool

from db import sessions
from db.pagination import list_page
from db.sessions import Message, Session, Turn
from generated.models import MessageCreate, MessageEdit, SessionCreate, SessionUpdate
from handlers import body_fields
from hub.core import generations
from hub.core.problems import require
from hub.engine import turns
from hub.http import context
from hub.http import sse as streaming
from hub.runtime import instance
from hub.services import sessions as service
from hub.services.toolkit import redacted_for_viewer

JSON = {"Content-Type": "application/json"}


def _reply(outcome) -> dict:
    message, turn = outcome
    return {"message": message.to_api(), "turn": turn.to_api()}


def list_sessions(limit=50, cursor=None, agent_id=None, status=None):
    """List conversations, newest first."""
    query = sessions.sessions(agent_id=agent_id, status=status)
    return list_page(query, Session.id, limit=limit, cursor=cursor, descending=True), 200


def create_session(body):
    """Start a conversation with an agent."""
    request = SessionCreate.model_validate(body)
    session = service.create_session(
        request.agent_id.root,
        request.title or "",
        request.metadata.root if request.metadata else {},
    )
    headers = {"Location": f"/api/v1/sessions/{session.id}", "ETag": session.etag}
    return session.to_api(), 201, headers


def get_session(session_id):
    """One conversation."""
    session = require(sessions.get_session(session_id), "session", session_id)
    return session.to_api(), 200, {"ETag": session.etag}


def update_session(session_id, body):
    """Change a conversation's title or metadata."""
    changes = body_fields(SessionUpdate, body)
    session = service.update_session(session_id, changes, if_match=context.header("If-Match"))
    return session.to_api(), 200, {"ETag": session.etag}


def delete_session(session_id):
    """Delete a conversation with its messages and turns."""
    service.delete_session(session_id)
    return None, 204


def close_session(session_id):
    """Close a conversation; it then refuses new messages."""
    return service.close_session(session_id).to_api(), 200


def list_messages(session_id, limit=50, cursor=None):
    """A conversation's history, oldest first."""
    require(sessions.get_session(session_id), "session", session_id)
    return list_page(sessions.messages(session_id), Message.id, limit=limit, cursor=cursor), 200


async def send_message(session_id, body):
    """Send a message and get the agent's reply (JSON, or SSE when streaming)."""
    request = MessageCreate.model_validate(body)
    plan = await run_in_threadpool(turns.plan_turn, session_id, content=request.content)
    if streaming.wants_stream(context.header("Accept"), request.stream):
        spawn = generations.current().spawn
        return streaming.event_stream(lambda sink: turns.generate(plan, sink), spawn)
    return _reply(await turns.reply(plan)), 200, JSON


async def edit_message(session_id, message_id, body):
    """Edit a user message; later messages are dropped and the reply regenerated."""
    request = MessageEdit.model_validate(body)
    plan = await run_in_threadpool(turns.prepare_edit, session_id, message_id, request.content)
    return _reply(await turns.reply(plan)), 200


async def stop_generation(session_id):
    """Stop the reply being generated, keeping what was produced."""
    dead = instance.current().dead_instances
    return await run_in_threadpool(turns.stop, session_id, dead), 200


async def retry_reply(session_id):
    """Regenerate the last reply."""
    plan = await run_in_threadpool(turns.prepare_retry, session_id)
    return _reply(await turns.reply(plan)), 200


def list_session_turns(session_id, limit=50, cursor=None):
    """One turn per assistant reply, oldest first."""
    require(sessions.get_session(session_id), "session", session_id)
    page = list_page(sessions.turns(session_id), Turn.id, limit=limit, cursor=cursor)
    return context.for_caller(page, redacted_for_viewer), 200
