"""The audit chain becomes keyed: ``audit_log.chain`` says how an entry's hash was made (1:
SHA-256, the entries written before; 2: HMAC-SHA256 under a key derived from
``AETHER_SECRET_KEY``). Existing entries keep their hashes; the first keyed entry covers the
last unkeyed hash, so they stay protected."""

from peewee import SmallIntegerField


def up(migrator, db):
    migrator.migrate(migrator.add_column("audit_log", "chain", SmallIntegerField(default=1)))


def down(migrator, db):
    migrator.migrate(migrator.drop_column("audit_log", "chain"))
