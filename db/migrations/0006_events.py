"""The event log and its consumers: events, durable consumer cursors, outbound subscriptions
and their deliveries, projects, integrations, inbound webhook receipts, event mappings,
triggers, schedules and their runs; the trace of chat turns and tool executions."""

from peewee import (
    BigAutoField,
    BigIntegerField,
    BooleanField,
    CharField,
    DateTimeField,
    IntegerField,
    Model,
    TextField,
)

TABLES = (
    "event",
    "event_cursor",
    "subscription",
    "delivery",
    "project",
    "integration",
    "webhook_receipt",
    "event_mapping",
    "trigger",
    "schedule",
    "schedule_run",
)
COLUMNS = (
    ("turn", "trace_id", lambda: CharField(max_length=64, null=True, index=True)),
    ("tool_execution", "trace_id", lambda: CharField(max_length=64, null=True, index=True)),
)


def up(migrator, db):
    class Base(Model):
        class Meta:
            database = db
            legacy_table_names = False

    class Event(Base):
        id = BigAutoField()
        type = CharField(max_length=120, index=True)
        source = CharField(max_length=120, index=True)
        subject = CharField(max_length=200, null=True, index=True)
        trace_id = CharField(max_length=64, index=True)
        payload = TextField()
        raw = TextField(null=True)
        time = DateTimeField(index=True)

    class EventCursor(Base):
        name = CharField(primary_key=True, max_length=40)
        position = BigIntegerField()
        updated_at = DateTimeField()

        class Meta:
            table_name = "event_cursor"

    class Subscription(Base):
        id = CharField(primary_key=True, max_length=40)
        url = TextField()
        types = TextField()
        secret_encrypted = TextField()
        description = TextField(default="")
        active = BooleanField(default=True)
        created_at = DateTimeField()
        updated_at = DateTimeField()

    class Delivery(Base):
        id = CharField(primary_key=True, max_length=40)
        subscription_id = CharField(max_length=40, index=True)
        event_id = BigIntegerField(index=True)
        event_type = CharField(max_length=120)
        status = CharField(max_length=16)
        attempts = IntegerField(default=0)
        next_attempt_at = DateTimeField(null=True)
        lease_owner = CharField(max_length=64, null=True)
        lease_expires_at = DateTimeField(null=True)
        last_status_code = IntegerField(null=True)
        last_error = TextField(null=True)
        delivered_at = DateTimeField(null=True)
        created_at = DateTimeField()

        class Meta:
            indexes = ((("status", "next_attempt_at"), False),)

    class Project(Base):
        id = CharField(primary_key=True, max_length=40)
        name = CharField(max_length=200)
        description = TextField(default="")
        source = CharField(max_length=16)
        source_project_id = CharField(max_length=200, null=True)
        version = IntegerField(default=1)
        created_at = DateTimeField()
        updated_at = DateTimeField()

    class Integration(Base):
        id = CharField(primary_key=True, max_length=40)
        kind = CharField(max_length=16)
        slug = CharField(max_length=64, unique=True)
        name = CharField(max_length=200, default="")
        project_id = CharField(max_length=40, null=True, index=True)
        credentials_encrypted = TextField(null=True)
        credential_names = TextField(default="[]")
        webhook_secret_encrypted = TextField(null=True)
        active = BooleanField(default=True)
        version = IntegerField(default=1)
        created_at = DateTimeField()
        updated_at = DateTimeField()

    class WebhookReceipt(Base):
        id = BigAutoField()
        integration_id = CharField(max_length=40)
        delivery_id = CharField(max_length=200)
        event_id = BigIntegerField()
        type = CharField(max_length=120, null=True)
        created_at = DateTimeField(index=True)

        class Meta:
            table_name = "webhook_receipt"
            indexes = ((("integration_id", "delivery_id"), True),)

    class EventMapping(Base):
        id = CharField(primary_key=True, max_length=40)
        source = CharField(max_length=16)
        event = CharField(max_length=100)
        action = CharField(max_length=100, null=True)
        filter = TextField(null=True)
        type = CharField(max_length=120)
        created_at = DateTimeField()

        class Meta:
            table_name = "event_mapping"
            indexes = ((("source", "event"), False),)

    class Trigger(Base):
        id = CharField(primary_key=True, max_length=40)
        name = CharField(max_length=200)
        event_type = CharField(max_length=200)
        filter = TextField(null=True)
        action = TextField()
        enabled = BooleanField(default=True)
        fired_count = IntegerField(default=0)
        error_count = IntegerField(default=0)
        last_fired_at = DateTimeField(null=True)
        last_error = TextField(null=True)
        version = IntegerField(default=1)
        created_at = DateTimeField()
        updated_at = DateTimeField()

    class Schedule(Base):
        id = CharField(primary_key=True, max_length=40)
        name = CharField(max_length=200)
        cron = CharField(max_length=120)
        timezone = CharField(max_length=64)
        enabled = BooleanField(default=True)
        action = TextField()
        next_run_at = DateTimeField(null=True, index=True)
        last_run_at = DateTimeField(null=True)
        version = IntegerField(default=1)
        created_at = DateTimeField()
        updated_at = DateTimeField()

    class ScheduleRun(Base):
        id = CharField(primary_key=True, max_length=40)
        schedule_id = CharField(max_length=40, index=True)
        trigger = CharField(max_length=16)
        scheduled_for = DateTimeField(null=True)
        started_at = DateTimeField()
        finished_at = DateTimeField(null=True)
        status = CharField(max_length=16)
        task_id = CharField(max_length=40, null=True)
        error = TextField(null=True)

        class Meta:
            table_name = "schedule_run"
            indexes = ((("schedule_id", "scheduled_for"), True),)

    db.create_tables(
        [
            Event,
            EventCursor,
            Subscription,
            Delivery,
            Project,
            Integration,
            WebhookReceipt,
            EventMapping,
            Trigger,
            Schedule,
            ScheduleRun,
        ]
    )
    migrator.migrate(*(migrator.add_column(table, name, make()) for table, name, make in COLUMNS))
    migrator.migrate(migrator.add_index("task", ("trace_id",), False))


def down(migrator, db):
    migrator.migrate(migrator.drop_index("task", "task_trace_id"))
    migrator.migrate(*(migrator.drop_index(table, f"{table}_{name}") for table, name, _ in COLUMNS))
    migrator.migrate(*(migrator.drop_column(table, name) for table, name, _ in COLUMNS))
    for table in TABLES:
        db.execute_sql(f"DROP TABLE IF EXISTS {table}")
