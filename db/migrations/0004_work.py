"""The work engine: tasks and their steps, tools and executions, approvals, notifications,
dead letters; the agent's step limit, a chat turn's paused tool loop, workers per instance."""

from peewee import (
    BigAutoField,
    BooleanField,
    CharField,
    DateTimeField,
    FloatField,
    IntegerField,
    Model,
    SmallIntegerField,
    TextField,
)

TABLES = ("task", "step", "tool", "tool_execution", "approval", "notification", "dead_letter")
COLUMNS = (
    ("agent", "max_steps", lambda: IntegerField(default=10)),
    ("turn", "approval_id", lambda: CharField(max_length=40, null=True)),
    ("turn", "loop_state", lambda: TextField(null=True)),
    ("instance", "workers", lambda: IntegerField(default=0)),
    ("instance", "busy_workers", lambda: IntegerField(default=0)),
)


def up(migrator, db):
    class Base(Model):
        class Meta:
            database = db
            legacy_table_names = False

    class Task(Base):
        id = CharField(primary_key=True, max_length=40)
        description = TextField()
        agent_id = CharField(max_length=64, index=True)
        capability = CharField(max_length=64, null=True)
        priority = SmallIntegerField()
        context = TextField()
        status = CharField(max_length=20)
        attempts = IntegerField(default=0)
        max_attempts = IntegerField()
        timeout_seconds = IntegerField()
        run_at = DateTimeField()
        lease_owner = CharField(max_length=64, null=True)
        lease_expires_at = DateTimeField(null=True)
        cancel_requested = BooleanField(default=False)
        approval_id = CharField(max_length=40, null=True)
        loop_state = TextField(null=True)
        result = TextField(null=True)
        error = TextField(null=True)
        trace_id = CharField(max_length=64)
        created_by = CharField(max_length=64, null=True)
        created_at = DateTimeField()
        updated_at = DateTimeField()
        started_at = DateTimeField(null=True)
        completed_at = DateTimeField(null=True)

        class Meta:
            indexes = (
                (("status", "priority", "run_at"), False),
                (("status", "lease_expires_at"), False),
            )

    class Step(Base):
        id = BigAutoField()
        owner_id = CharField(max_length=40, index=True)
        index = IntegerField()
        attempt = IntegerField()
        kind = CharField(max_length=8)
        name = CharField(max_length=200)
        status = CharField(max_length=20)
        input = TextField()
        output = TextField(null=True)
        error = TextField(null=True)
        prompt_tokens = IntegerField(null=True)
        completion_tokens = IntegerField(null=True)
        approval_id = CharField(max_length=40, null=True)
        tool_execution_id = CharField(max_length=40, null=True)
        started_at = DateTimeField()
        duration_ms = FloatField(null=True)

    class Tool(Base):
        name = CharField(primary_key=True, max_length=64)
        description = TextField()
        parameters = TextField()
        endpoint = TextField()
        method = CharField(max_length=8)
        headers_encrypted = TextField(null=True)
        header_names = TextField(default="[]")
        timeout_seconds = FloatField()
        requires_approval = BooleanField(default=False)
        created_at = DateTimeField()

    class ToolExecution(Base):
        id = CharField(primary_key=True, max_length=40)
        tool = CharField(max_length=64, index=True)
        arguments = TextField()
        status = CharField(max_length=16)
        result = TextField(null=True)
        error = TextField(null=True)
        duration_ms = FloatField()
        caller = CharField(max_length=64)
        task_id = CharField(max_length=40, null=True, index=True)
        turn_id = CharField(max_length=40, null=True, index=True)
        approval_id = CharField(max_length=40, null=True)
        created_at = DateTimeField()

    class Approval(Base):
        id = CharField(primary_key=True, max_length=40)
        status = CharField(max_length=16, index=True)
        tool = CharField(max_length=64)
        arguments = TextField()
        tool_call_id = CharField(max_length=200)
        agent_id = CharField(max_length=64)
        task_id = CharField(max_length=40, null=True, index=True)
        turn_id = CharField(max_length=40, null=True, index=True)
        session_id = CharField(max_length=40, null=True)
        expires_at = DateTimeField(index=True)
        created_at = DateTimeField()
        decided_at = DateTimeField(null=True)
        decided_by = CharField(max_length=64, null=True)
        comment = TextField(null=True)

    class Notification(Base):
        id = CharField(primary_key=True, max_length=40)
        kind = CharField(max_length=64)
        severity = CharField(max_length=16)
        title = TextField()
        message = TextField()
        subject = CharField(max_length=200, null=True)
        read_at = DateTimeField(null=True)
        dismissed_at = DateTimeField(null=True)
        created_at = DateTimeField()

    class DeadLetter(Base):
        id = CharField(primary_key=True, max_length=40)
        kind = CharField(max_length=16)
        subject_id = CharField(max_length=40, index=True)
        status = CharField(max_length=16, index=True)
        reason = TextField()
        error = TextField(null=True)
        attempts = IntegerField()
        created_at = DateTimeField()
        resolved_at = DateTimeField(null=True)

        class Meta:
            table_name = "dead_letter"

    db.create_tables([Task, Step, Tool, ToolExecution, Approval, Notification, DeadLetter])
    migrator.migrate(*(migrator.add_column(table, name, make()) for table, name, make in COLUMNS))


def down(migrator, db):
    migrator.migrate(*(migrator.drop_column(table, name) for table, name, _ in COLUMNS))
    for table in TABLES:
        db.execute_sql(f"DROP TABLE IF EXISTS {table}")
