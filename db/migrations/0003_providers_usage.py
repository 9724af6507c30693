"""LLM providers configured through the API (keys encrypted) and one usage row per LLM call."""

from peewee import (
    BigAutoField,
    CharField,
    DateTimeField,
    FloatField,
    IntegerField,
    Model,
    TextField,
)


def up(migrator, db):
    class Base(Model):
        class Meta:
            database = db
            legacy_table_names = False

    class Provider(Base):
        id = CharField(primary_key=True, max_length=64)
        kind = CharField(max_length=16)
        base_url = TextField(null=True)
        api_key_encrypted = TextField(null=True)
        models = TextField(default="[]")
        connect_timeout = FloatField()
        read_timeout = FloatField()
        version = IntegerField(default=1)
        created_at = DateTimeField()
        updated_at = DateTimeField()

    class UsageRecord(Base):
        id = BigAutoField()
        at = DateTimeField(index=True)
        source = CharField(max_length=16)
        provider = CharField(max_length=64)
        model = CharField(max_length=200)
        agent_id = CharField(max_length=64, null=True, index=True)
        session_id = CharField(max_length=40, null=True, index=True)
        turn_id = CharField(max_length=40, null=True)
        status = CharField(max_length=16)
        prompt_tokens = IntegerField()
        completion_tokens = IntegerField()
        latency_ms = FloatField(null=True)
        ttft_ms = FloatField(null=True)
        cost = FloatField()

        class Meta:
            table_name = "usage_record"

    db.create_tables([Provider, UsageRecord])


def down(migrator, db):
    for table in ("usage_record", "provider"):
        db.execute_sql(f"DROP TABLE IF EXISTS {table}")
