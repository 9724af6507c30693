"""Conversations: sessions, their messages, and one turn per assistant reply."""

from peewee import (
    CharField,
    DateTimeField,
    FloatField,
    IntegerField,
    Model,
    SmallIntegerField,
    TextField,
)


def up(migrator, db):
    class Base(Model):
        class Meta:
            database = db
            legacy_table_names = False

    class Session(Base):
        id = CharField(primary_key=True, max_length=40)
        agent_id = CharField(max_length=64, index=True)
        title = TextField(default="")
        metadata = TextField(default="{}")
        status = CharField(max_length=16, index=True)
        message_count = IntegerField(default=0)
        version = IntegerField(default=1)
        created_at = DateTimeField()
        updated_at = DateTimeField()
        closed_at = DateTimeField(null=True)

    class Message(Base):
        id = CharField(primary_key=True, max_length=40)
        session_id = CharField(max_length=40, index=True)
        role = CharField(max_length=16)
        content = TextField()
        status = CharField(max_length=16)
        turn_id = CharField(max_length=40, null=True)
        created_at = DateTimeField()

    class Turn(Base):
        id = CharField(primary_key=True, max_length=40)
        session_id = CharField(max_length=40, index=True)
        agent_id = CharField(max_length=64, index=True)
        agent_config_version = IntegerField()
        user_message_id = CharField(max_length=40)
        assistant_message_id = CharField(max_length=40, null=True)
        provider = CharField(max_length=64)
        model = CharField(max_length=200)
        status = CharField(max_length=16)
        finish_reason = CharField(max_length=32, null=True)
        prompt_tokens = IntegerField(default=0)
        completion_tokens = IntegerField(default=0)
        latency_ms = FloatField(null=True)
        ttft_ms = FloatField(null=True)
        context = TextField()
        error = TextField(null=True)
        created_at = DateTimeField()
        completed_at = DateTimeField(null=True)
        feedback_grade = SmallIntegerField(null=True)
        feedback_comment = TextField(null=True)
        feedback_at = DateTimeField(null=True)

    db.create_tables([Session, Message, Turn])


def down(migrator, db):
    for table in ("turn", "message", "session"):
        db.execute_sql(f"DROP TABLE IF EXISTS {table}")
