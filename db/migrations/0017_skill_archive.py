"""The archive a skill version was imported from (``skill_version.archive_kind``: ``tar.gz`` or
``zip``, and its bytes), kept when the import kept every file of it, so that exporting the
version in that kind answers the very bytes uploaded. Null for every other version."""

from peewee import BlobField, CharField


def up(migrator, db):
    migrator.migrate(
        migrator.add_column("skill_version", "archive_kind", CharField(max_length=8, null=True)),
        migrator.add_column("skill_version", "archive", BlobField(null=True)),
    )


def down(migrator, db):
    migrator.migrate(
        migrator.drop_column("skill_version", "archive"),
        migrator.drop_column("skill_version", "archive_kind"),
    )
