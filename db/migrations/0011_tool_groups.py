"""Tool groups: named sets of tools an agent lists as ``group:<name>``. A few are seeded, so
that a new hub offers them at once (``source`` ``seed``; editable and removable like any)."""

import datetime as dt
import json

from peewee import CharField, DateTimeField, IntegerField, Model, TextField

SEEDED = (
    ("memory", "Search the hub's memory and store what is worth keeping.",
     ["memory_search", "memory_store"]),
    ("web", "Call HTTP endpoints (the outbound address policy applies).", ["http_request"]),
    ("coordination", "Hand work to other agents and notify people.", ["create_task", "notify"]),
    ("time", "Know the current date and time in any time zone.", ["current_time"]),
)  # fmt: skip


def up(migrator, db):
    class ToolGroup(Model):
        name = CharField(primary_key=True, max_length=64)
        description = TextField(default="")
        tools = TextField()
        source = CharField(max_length=80)
        version = IntegerField(default=1)
        created_at = DateTimeField()
        updated_at = DateTimeField()

        class Meta:
            database = db
            table_name = "tool_group"

    db.create_tables([ToolGroup])
    now = dt.datetime.now(dt.UTC).replace(tzinfo=None, microsecond=0)
    for name, description, tools in SEEDED:
        ToolGroup.create(
            name=name,
            description=description,
            tools=json.dumps(tools),
            source="seed",
            created_at=now,
            updated_at=now,
        )


def down(migrator, db):
    db.execute_sql("DROP TABLE IF EXISTS tool_group")
