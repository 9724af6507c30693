"""The provenance of MCP servers (``mcp_server.source``: ``api``, or ``plugin:<id>`` for one a
plugin brings), as tools (0014) and tool groups (0011) have."""

from peewee import CharField


def up(migrator, db):
    migrator.migrate(
        migrator.add_column("mcp_server", "source", CharField(max_length=80, default="api"))
    )


def down(migrator, db):
    migrator.migrate(migrator.drop_column("mcp_server", "source"))
