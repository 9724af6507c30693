"""The skills of a chat turn (``turn.skills``: the skill versions offered to the agent and the
ones the model loaded, ``hub.engine.disclosure``); null for turns from before."""

from db.base import JSONField


def up(migrator, db):
    migrator.migrate(migrator.add_column("turn", "skills", JSONField(null=True)))


def down(migrator, db):
    migrator.migrate(migrator.drop_column("turn", "skills"))
