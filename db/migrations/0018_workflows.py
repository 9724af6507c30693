"""Workflows: definitions and their versions, runs and their steps. Tasks gain ``kind``
(``agent``; or the workflow step kind a worker executes: ``tool``, ``condition``,
``approval``, ``wait``, ``output``) and the run and step they execute; their ``agent_id``
becomes optional (only agent steps have one). Approvals gain the workflow run and step that
asked, and their ``agent_id`` becomes optional too (an approval step guarding a tool step has
no agent). Schedule runs record the workflow run a ``start_workflow`` action started."""

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

    class Workflow(Base):
        id = CharField(primary_key=True, max_length=64)
        version = IntegerField()
        definition = TextField()
        sha256 = CharField(max_length=64)
        created_by = CharField(max_length=64, null=True)
        created_at = DateTimeField()
        updated_at = DateTimeField()

        class Meta:
            table_name = "workflow"

    class WorkflowVersion(Base):
        id = BigAutoField()
        workflow_id = CharField(max_length=64, index=True)
        version = IntegerField()
        definition = TextField()
        sha256 = CharField(max_length=64)
        created_by = CharField(max_length=64, null=True)
        created_at = DateTimeField()

        class Meta:
            table_name = "workflow_version"
            indexes = ((("workflow_id", "version"), True),)

    class WorkflowRun(Base):
        id = CharField(primary_key=True, max_length=40)
        workflow_id = CharField(max_length=64, index=True)
        version = IntegerField()
        sha256 = CharField(max_length=64)
        status = CharField(max_length=16, index=True)
        input = TextField()
        output = TextField(null=True)
        error = TextField(null=True)
        cancel_requested = BooleanField(default=False)
        rerun_of = CharField(max_length=40, null=True)
        trace_id = CharField(max_length=64, index=True)
        created_by = CharField(max_length=64, null=True)
        created_at = DateTimeField()
        updated_at = DateTimeField()
        completed_at = DateTimeField(null=True)

        class Meta:
            table_name = "workflow_run"

    class RunStep(Base):
        id = BigAutoField()
        run_id = CharField(max_length=40, index=True)
        step_id = CharField(max_length=64)
        kind = CharField(max_length=16)
        status = CharField(max_length=20)
        branch = CharField(max_length=80, null=True)
        attempts = IntegerField(default=0)
        task_id = CharField(max_length=40, null=True, index=True)
        approval_id = CharField(max_length=40, null=True)
        input = TextField(null=True)
        output = TextField(null=True)
        error = TextField(null=True)
        followed = BooleanField(default=False)
        created_at = DateTimeField()
        started_at = DateTimeField(null=True)
        completed_at = DateTimeField(null=True)

        class Meta:
            table_name = "run_step"
            indexes = ((("run_id", "step_id"), True),)

    db.create_tables([Workflow, WorkflowVersion, WorkflowRun, RunStep])
    migrator.migrate(
        migrator.add_column("task", "kind", CharField(max_length=16, default="agent")),
        migrator.add_column("task", "workflow_run_id", CharField(max_length=40, null=True)),
        migrator.add_column("task", "workflow_step", CharField(max_length=64, null=True)),
        migrator.drop_not_null("task", "agent_id"),
        migrator.add_column("approval", "workflow_run_id", CharField(max_length=40, null=True)),
        migrator.add_column("approval", "workflow_step", CharField(max_length=64, null=True)),
        migrator.drop_not_null("approval", "agent_id"),
        migrator.add_column("schedule_run", "workflow_run_id", CharField(max_length=40, null=True)),
    )
    migrator.migrate(migrator.add_index("task", ("workflow_run_id",), False))


def down(migrator, db):
    migrator.migrate(
        migrator.drop_index("task", "task_workflow_run_id"),
        migrator.drop_column("task", "kind"),
        migrator.drop_column("task", "workflow_run_id"),
        migrator.drop_column("task", "workflow_step"),
        migrator.drop_column("approval", "workflow_run_id"),
        migrator.drop_column("approval", "workflow_step"),
        migrator.drop_column("schedule_run", "workflow_run_id"),
    )
    for table in ("run_step", "workflow_run", "workflow_version", "workflow"):
        db.execute_sql(f"DROP TABLE IF EXISTS {table}")
