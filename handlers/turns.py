"""One turn per assistant reply, with its context, usage and feedback."""

from __future__ import annotations

from db import sessions
from generated.models import FeedbackPut
from hub.core.problems import NotFound, require
from hub.http import context
from hub.services import sessions as service
from hub.services.toolkit import redacted_for_viewer


def get_turn(turn_id):
    """One turn, with the model, tokens, timings and the exact context sent."""
    turn = require(sessions.get_turn(turn_id), "turn", turn_id).to_api()
    return context.for_caller(turn, redacted_for_viewer), 200


def get_turn_feedback(turn_id):
    """The feedback given on a turn."""
    turn = require(sessions.get_turn(turn_id), "turn", turn_id)
    if turn.feedback_grade is None:
        raise NotFound(f"Turn {turn_id!r} has no feedback yet.", code="feedback_not_found")
    return turn.feedback_to_api(), 200


def put_turn_feedback(turn_id, body):
    """Grade a turn (1-5) with an optional comment; replaces earlier feedback."""
    request = FeedbackPut.model_validate(body)
    turn = service.put_feedback(turn_id, request.grade, request.comment or "")
    return turn.feedback_to_api(), 200
