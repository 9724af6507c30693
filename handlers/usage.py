"""Tokens, calls and cost of every LLM call."""

from __future__ import annotations

from db import sessions
from hub.core.problems import require
from hub.services import usage


def get_usage_summary(days=30):
    """Calls, tokens and cost over the last days."""
    return usage.summary(days), 200


def get_usage_daily(days=30):
    """Usage per UTC day."""
    return usage.daily(days), 200


def get_usage_models(days=30):
    """Usage per provider and model."""
    return usage.by_model(days), 200


def get_usage_agents(days=30):
    """Usage per agent."""
    return usage.by_agent(days), 200


def get_usage_session(session_id):
    """One conversation's usage and cost."""
    require(sessions.get_session(session_id), "session", session_id)
    return usage.for_session(session_id), 200
