"""Memory: scoped memories with full-text search (FTS5 on SQLite; on PostgreSQL a stored,
generated ``tsvector`` column with a GIN index, which the models do not declare) and links
between them; which memories a chat turn recalled."""

from peewee import (
    BigAutoField,
    CharField,
    DateTimeField,
    FloatField,
    IntegerField,
    Model,
    PostgresqlDatabase,
    TextField,
)

SQLITE_FTS = (
    "CREATE VIRTUAL TABLE memory_fts USING fts5(content, tags, content='memory', "
    "content_rowid='seq', tokenize='porter unicode61')",
    "CREATE TRIGGER memory_fts_insert AFTER INSERT ON memory BEGIN "
    "INSERT INTO memory_fts(rowid, content, tags) VALUES (new.seq, new.content, new.tags); END",
    "CREATE TRIGGER memory_fts_delete AFTER DELETE ON memory BEGIN "
    "INSERT INTO memory_fts(memory_fts, rowid, content, tags) "
    "VALUES ('delete', old.seq, old.content, old.tags); END",
    "CREATE TRIGGER memory_fts_update AFTER UPDATE OF content, tags ON memory BEGIN "
    "INSERT INTO memory_fts(memory_fts, rowid, content, tags) "
    "VALUES ('delete', old.seq, old.content, old.tags); "
    "INSERT INTO memory_fts(rowid, content, tags) VALUES (new.seq, new.content, new.tags); END",
)
POSTGRES_FTS = (
    "ALTER TABLE memory ADD COLUMN tsv tsvector GENERATED ALWAYS AS "
    "(to_tsvector('english', content || ' ' || tags)) STORED",
    "CREATE INDEX memory_search ON memory USING GIN (tsv)",
)


def up(migrator, db):
    class Base(Model):
        class Meta:
            database = db
            legacy_table_names = False

    class Memory(Base):
        seq = BigAutoField()
        key = CharField(max_length=200, unique=True)
        content = TextField()
        scope = CharField(max_length=16, index=True)
        agent_id = CharField(max_length=64, null=True, index=True)
        project_id = CharField(max_length=64, null=True, index=True)
        session_id = CharField(max_length=64, null=True, index=True)
        tags = TextField(default="[]")
        expires_at = DateTimeField(null=True, index=True)
        embedding = TextField(null=True)
        version = IntegerField(default=1)
        created_at = DateTimeField()
        updated_at = DateTimeField()

    class MemoryLink(Base):
        id = BigAutoField()
        source = CharField(max_length=200, index=True)
        target = CharField(max_length=200, index=True)
        relation = CharField(max_length=64)
        weight = FloatField()
        created_at = DateTimeField()

        class Meta:
            table_name = "memory_link"
            indexes = ((("source", "target", "relation"), True),)

    db.create_tables([Memory, MemoryLink])
    for statement in POSTGRES_FTS if isinstance(db, PostgresqlDatabase) else SQLITE_FTS:
        db.execute_sql(statement)
    migrator.migrate(migrator.add_column("turn", "memories", TextField(null=True)))


def down(migrator, db):
    migrator.migrate(migrator.drop_column("turn", "memories"))
    for table in ("memory_fts", "memory_link", "memory"):
        db.execute_sql(f"DROP TABLE IF EXISTS {table}")
