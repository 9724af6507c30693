"""Plugins: each installed plugin, every version installed (its manifest kept for rollback),
and the provenance of the HTTP tools a plugin brings (``tool.source``: ``api``, or
``plugin:<id>``; tool groups have had a ``source`` since 0011)."""

from peewee import (
    BigAutoField,
    BooleanField,
    CharField,
    DateTimeField,
    IntegerField,
    Model,
    TextField,
)


def up(migrator, db):
    class Base(Model):
        class Meta:
            database = db

    class Plugin(Base):
        id = CharField(primary_key=True, max_length=64)
        version = CharField(max_length=32)
        enabled = BooleanField(default=True)
        revision = IntegerField(default=1)
        installed_at = DateTimeField()
        updated_at = DateTimeField()

        class Meta:
            table_name = "plugin"

    class PluginVersion(Base):
        id = BigAutoField()
        plugin_id = CharField(max_length=64, index=True)
        version = CharField(max_length=32)
        manifest = TextField()
        sha256 = CharField(max_length=64)
        installed_at = DateTimeField()

        class Meta:
            table_name = "plugin_version"
            indexes = ((("plugin_id", "version"), True),)

    db.create_tables([Plugin, PluginVersion])
    migrator.migrate(migrator.add_column("tool", "source", CharField(max_length=80, default="api")))


def down(migrator, db):
    migrator.migrate(migrator.drop_column("tool", "source"))
    for table in ("plugin_version", "plugin"):
        db.execute_sql(f"DROP TABLE IF EXISTS {table}")
