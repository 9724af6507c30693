"""Who wrote what, and who runs what:

- ``event.actor``: the API key id of a pushed event, ``hub`` for the hub's own (null on
  events written before);
- ``turn.instance_id``: the hub instance generating a running turn, so a turn left
  ``running`` by a dead process can be found and marked ``interrupted``."""

from peewee import CharField

COLUMNS = (
    ("event", "actor", lambda: CharField(max_length=64, null=True)),
    ("turn", "instance_id", lambda: CharField(max_length=40, null=True)),
)


def up(migrator, db):
    migrator.migrate(*(migrator.add_column(table, name, make()) for table, name, make in COLUMNS))


def down(migrator, db):
    migrator.migrate(*(migrator.drop_column(table, name) for table, name, _ in COLUMNS))
