"""Skills in the Agent Skills format: a row per skill pointing at its current version; each
version immutable, with its files (SKILL.md included) stored as bytes in the database, since
hubs on several machines share one database and not a data folder."""

from peewee import (
    BigAutoField,
    BigIntegerField,
    BlobField,
    BooleanField,
    CharField,
    DateTimeField,
    IntegerField,
    Model,
    TextField,
)


def up(migrator, db):
    class Skill(Model):
        name = CharField(primary_key=True, max_length=64)
        description = TextField()
        tags = TextField(default="[]")
        enabled = BooleanField(default=True)
        source = CharField(max_length=80)
        current = IntegerField()
        sha256 = CharField(max_length=64)
        revision = IntegerField(default=1)
        created_at = DateTimeField()
        updated_at = DateTimeField()

        class Meta:
            database = db
            table_name = "skill"

    class SkillVersion(Model):
        id = BigAutoField()
        skill = CharField(max_length=64, index=True)
        number = IntegerField()
        sha256 = CharField(max_length=64)
        front_matter = TextField()
        body = TextField()
        source = CharField(max_length=80)
        created_at = DateTimeField()
        created_by = CharField(max_length=40, null=True)

        class Meta:
            database = db
            table_name = "skill_version"
            indexes = ((("skill", "number"), True),)

    class SkillFile(Model):
        id = BigAutoField()
        version_id = BigIntegerField(index=True)
        path = CharField(max_length=255)
        content = BlobField()
        size = IntegerField()
        sha256 = CharField(max_length=64)

        class Meta:
            database = db
            table_name = "skill_file"
            indexes = ((("version_id", "path"), True),)

    db.create_tables([Skill, SkillVersion, SkillFile])


def down(migrator, db):
    for table in ("skill_file", "skill_version", "skill"):
        db.execute_sql(f"DROP TABLE IF EXISTS {table}")
