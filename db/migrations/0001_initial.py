"""Foundation: API keys, agents and their config versions, audit log, idempotency records,
hub instances and runtime configuration overrides."""

from peewee import (
    BigAutoField,
    BooleanField,
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

    class ApiKey(Base):
        id = CharField(primary_key=True, max_length=40)
        name = CharField(max_length=200)
        role = CharField(max_length=16)
        prefix = CharField(max_length=16)
        secret_hash = CharField(max_length=64, unique=True)
        created_at = DateTimeField()
        created_by = CharField(max_length=40, null=True)
        last_used_at = DateTimeField(null=True)
        revoked_at = DateTimeField(null=True)

    class Agent(Base):
        id = CharField(primary_key=True, max_length=64)
        name = CharField(max_length=200)
        description = TextField(default="")
        role = TextField(default="")
        model = CharField(max_length=200)
        system_prompt = TextField(default="")
        temperature = FloatField(null=True)
        max_tokens = IntegerField(null=True)
        tools = TextField(default="[]")
        skills = TextField(default="[]")
        capabilities = TextField(default="[]")
        memory = TextField(default="{}")
        status = CharField(max_length=16, index=True)
        config_version = IntegerField()
        version = IntegerField()
        created_at = DateTimeField()
        updated_at = DateTimeField()

    class AgentVersion(Base):
        id = BigAutoField()
        agent_id = CharField(max_length=64, index=True)
        number = IntegerField()
        config = TextField()
        created_at = DateTimeField()
        created_by = CharField(max_length=40, null=True)

        class Meta:
            indexes = ((("agent_id", "number"), True),)

    class AuditEntry(Base):
        seq = BigAutoField()
        at = DateTimeField()
        actor_key_id = CharField(max_length=40, null=True)
        actor_name = CharField(max_length=200, null=True)
        operator = CharField(max_length=200, null=True)
        operation_id = CharField(max_length=100, null=True)
        method = CharField(max_length=10)
        resource = TextField()
        status = IntegerField()
        request_id = CharField(max_length=128)
        prev_hash = CharField(max_length=64)
        hash = CharField(max_length=64)

        class Meta:
            table_name = "audit_log"

    class IdempotencyRecord(Base):
        id = BigAutoField()
        actor = CharField(max_length=40)
        key = CharField(max_length=255)
        operation_id = CharField(max_length=100)
        request_hash = CharField(max_length=64)
        status = IntegerField(null=True)
        headers = TextField(null=True)
        body = TextField(null=True)
        created_at = DateTimeField(index=True)

        class Meta:
            indexes = ((("actor", "key"), True),)

    class Instance(Base):
        id = CharField(primary_key=True, max_length=40)
        name = CharField(max_length=200)
        hostname = CharField(max_length=255)
        pid = IntegerField()
        version = CharField(max_length=40)
        started_at = DateTimeField()
        heartbeat_at = DateTimeField(index=True)
        draining = BooleanField(default=False)
        stopped_at = DateTimeField(null=True)

    class ConfigOverride(Base):
        key = CharField(primary_key=True, max_length=64)
        value = TextField()
        updated_at = DateTimeField()

    db.create_tables(
        [ApiKey, Agent, AgentVersion, AuditEntry, IdempotencyRecord, Instance, ConfigOverride]
    )


def down(migrator, db):
    for table in (
        "config_override",
        "instance",
        "idempotency_record",
        "audit_log",
        "agent_version",
        "agent",
        "api_key",
    ):
        db.execute_sql(f"DROP TABLE IF EXISTS {table}")
