"""MCP servers as tool sources: the servers (URL, encrypted headers and token, timeout,
the protocol revision discovery found) and the tools each one offered at its last discovery,
under the hub's names (``<server>__<tool>``)."""

from peewee import (
    BooleanField,
    CharField,
    DateTimeField,
    FloatField,
    Model,
    TextField,
)


def up(migrator, db):
    class McpServer(Model):
        id = CharField(primary_key=True, max_length=64)
        url = TextField()
        headers_encrypted = TextField(null=True)
        header_names = TextField()
        token_encrypted = TextField(null=True)
        timeout_seconds = FloatField()
        requires_approval = BooleanField(default=False)
        protocol_version = CharField(max_length=32, null=True)
        server_info = TextField(null=True)
        skipped = TextField()
        status = CharField(max_length=16)
        last_error = TextField(null=True)
        discovered_at = DateTimeField(null=True)
        tools_expire_at = DateTimeField(null=True)
        created_at = DateTimeField()

        class Meta:
            database = db
            table_name = "mcp_server"

    class McpTool(Model):
        name = CharField(primary_key=True, max_length=64)
        server_id = CharField(max_length=64, index=True)
        remote_name = CharField(max_length=128)
        description = TextField()
        parameters = TextField()
        discovered_at = DateTimeField()

        class Meta:
            database = db
            table_name = "mcp_tool"

    db.create_tables([McpServer, McpTool])


def down(migrator, db):
    db.execute_sql("DROP TABLE IF EXISTS mcp_tool")
    db.execute_sql("DROP TABLE IF EXISTS mcp_server")
