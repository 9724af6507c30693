"""Numbered migrations: applied once, identical on SQLite and PostgreSQL, matching the models."""

from __future__ import annotations

import pytest

from db import (
    agents,
    api_keys,
    approvals,
    audit,
    automation,
    dead_letters,
    events,
    mcp_servers,
    memories,
    notifications,
    plugins,
    projects,
    providers,
    sessions,
    skills,
    subscriptions,
    system,
    tasks,
    tools,
    usage,
    workflows,
)
from db import base as db_base

MODELS = [
    api_keys.ApiKey,
    agents.Agent,
    agents.AgentVersion,
    audit.AuditEntry,
    system.Instance,
    system.ConfigOverride,
    system.IdempotencyRecord,
    sessions.Session,
    sessions.Message,
    sessions.Turn,
    providers.ProviderConfig,
    usage.UsageRecord,
    tasks.Task,
    tasks.Step,
    tools.Tool,
    tools.ToolExecution,
    tools.ToolGroup,
    plugins.Plugin,
    plugins.PluginVersion,
    mcp_servers.McpServer,
    mcp_servers.McpTool,
    skills.Skill,
    skills.SkillVersion,
    skills.SkillFile,
    approvals.Approval,
    notifications.Notification,
    dead_letters.DeadLetter,
    memories.Memory,
    memories.MemoryLink,
    events.Event,
    events.EventCursor,
    subscriptions.Subscription,
    subscriptions.Delivery,
    projects.Project,
    projects.Integration,
    projects.WebhookReceipt,
    projects.EventMapping,
    automation.Trigger,
    automation.Schedule,
    automation.ScheduleRun,
    workflows.Workflow,
    workflows.WorkflowVersion,
    workflows.WorkflowRun,
    workflows.RunStep,
]


# Columns the database computes itself and the models never write: PostgreSQL's stored
# full-text vector of each memory (SQLite keeps it in the FTS5 table instead).
DATABASE_ONLY = {"memory": {"tsv"}}


@pytest.fixture
def fresh_db(database_url, backend, request):
    if backend == "postgresql":
        # The per-test databases come from a migrated template: start from an empty one.
        admin = request.getfixturevalue("pg_admin")
        name = database_url.rsplit("/", 1)[-1] + "_fresh"
        admin.execute(f"CREATE DATABASE {name}")
        database_url = database_url.rsplit("/", 1)[0] + "/" + name
        db = db_base.open_database(database_url)
        yield db
        db.close()
        admin.execute(f"DROP DATABASE {name} WITH (FORCE)")
    else:
        db = db_base.open_database(database_url)
        yield db
        db.close()


def test_migrations_apply_once(fresh_db):
    names = [
        "0001_initial",
        "0002_conversations",
        "0003_providers_usage",
        "0004_work",
        "0005_memory",
        "0006_events",
        "0007_mapping_errors",
        "0008_idempotency_secrets",
        "0009_actors_and_owners",
        "0010_keyed_audit_chain",
        "0011_tool_groups",
        "0012_skills",
        "0013_mcp_servers",
        "0014_plugins",
        "0015_mcp_server_source",
        "0016_turn_skills",
        "0017_skill_archive",
        "0018_workflows",
    ]
    assert db_base.migrate() == names
    assert db_base.migrate() == []
    assert db_base.migration_status() == [(name, True) for name in names]


def test_tables_match_the_models(fresh_db):
    db_base.migrate()
    for model in MODELS:
        table = model._meta.table_name
        columns = {column.name for column in fresh_db.get_columns(table)}
        columns -= DATABASE_ONLY.get(table, set())
        assert columns == {field.column_name for field in model._meta.sorted_fields}, table
        if model is not tools.ToolGroup:  # the one table a migration seeds (0011)
            assert list(model.select().limit(1)) == []


def test_down_removes_every_table(fresh_db):
    from playhouse import migrations

    db_base.migrate()
    runner = migrations.Runner(fresh_db, str(db_base.MIGRATIONS_DIR), table_name="schema_migration")
    runner.down(target="0001_initial")  # back through the first: everything
    remaining = set(fresh_db.get_tables()) - {"schema_migration"}
    assert remaining == set()


def test_0008_scrubs_secrets_kept_before_it(fresh_db):
    import importlib

    db_base.migrate()
    kept = '{"id":"key_1","secret":"aek_plaintext","name":"ci"}'
    system.IdempotencyRecord.create(
        actor="admin",
        key="k",
        operation_id="create_api_key",
        request_hash="h",
        status=201,
        headers={},
        body=kept,
        created_at=db_base.utcnow(),
    )
    migration = importlib.import_module("db.migrations.0008_idempotency_secrets")
    migration.up(None, db_base.database.obj)
    (record,) = system.IdempotencyRecord.select()
    assert "aek_plaintext" not in record.body
    assert '"secret":null' in record.body and '"notice"' in record.body
