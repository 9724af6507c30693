"""Event mappings record their failures like triggers do: ``error_count`` and ``last_error``
(a filter that failed or ran past the user-program limits on a delivery)."""

from peewee import IntegerField, TextField

COLUMNS = (
    ("event_mapping", "error_count", lambda: IntegerField(default=0)),
    ("event_mapping", "last_error", lambda: TextField(null=True)),
)


def up(migrator, db):
    migrator.migrate(*(migrator.add_column(table, name, make()) for table, name, make in COLUMNS))


def down(migrator, db):
    migrator.migrate(*(migrator.drop_column(table, name) for table, name, _ in COLUMNS))
