"""Work that ran out of attempts, to retry or discard."""

from __future__ import annotations

from db import dead_letters as db_dead_letters
from db.dead_letters import DeadLetter
from db.pagination import list_page
from hub.services import dead_letters


def list_dead_letters(limit=50, cursor=None, kind=None, status=None):
    """Work that ran out of attempts, newest first."""
    query = db_dead_letters.dead_letters(kind=kind, status=status)
    return list_page(query, DeadLetter.id, limit=limit, cursor=cursor, descending=True), 200


def get_dead_letter_depth():
    """How many dead letters are open, in all and per kind."""
    return db_dead_letters.depth(), 200


def retry_dead_letter(dead_letter_id):
    """Run the dead work again (a task is queued with fresh attempts)."""
    return dead_letters.retry(dead_letter_id).to_api(), 200


def discard_dead_letter(dead_letter_id):
    """Give up on the dead work."""
    return dead_letters.discard(dead_letter_id).to_api(), 200
