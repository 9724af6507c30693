"""What a trigger or a schedule does: its action, checked when it is stored and run when it
fires. The one kind so far, ``create_task``, makes a task for ``agent_id`` or for an agent
with ``capability``, at ``priority``, whose description is ``description`` rendered as a
template.

Templates are Jinja2 in a sandbox (``ImmutableSandboxedEnvironment``, a
``SandboxedEnvironment`` that also refuses to change lists and dicts: no access to Python
internals, no unsafe calls, and one trigger's template cannot alter the event the next one
sees), with ``StrictUndefined`` (a name or key that is not there is an error, never an
empty string) and autoescape off (the output is plain text for an agent). A trigger renders
over ``{"event": …}`` (the event as the API shows it, without ``raw``), a schedule over
``{"schedule": {id, name, cron, timezone}, "now": …}``. Repetition (``*``, ``**``) and the
output are bounded, so a template cannot make a gigabyte string.
"""

from __future__ import annotations

import functools

import jinja2
from jinja2.sandbox import ImmutableSandboxedEnvironment, SecurityError

from db import agents
from db.tasks import Task
from hub.core.problems import Unprocessable
from hub.services import tasks

MAX_DESCRIPTION = 20000  # a task description's limit (openapi.yaml, TaskCreate)
MAX_REPEAT = 100_000  # the longest sequence ``*`` may make in a template
MAX_EXPONENT = 1000
ERROR_LIMIT = 1000  # characters of an error message kept


class ActionFailed(Exception):
    """The action could not run (template, routing); ``str`` says why, for a person."""


class _Sandbox(ImmutableSandboxedEnvironment):
    intercepted_binops = frozenset({"*", "**"})

    def call_binop(self, context, operator, left, right):
        if operator == "*":
            for sequence, times in ((left, right), (right, left)):
                if (
                    isinstance(sequence, str | list | tuple)
                    and isinstance(times, int)
                    and len(sequence) * times > MAX_REPEAT
                ):
                    raise SecurityError(f"a repetition longer than {MAX_REPEAT} is not allowed")
        if operator == "**" and isinstance(right, int) and abs(right) > MAX_EXPONENT:
            raise SecurityError(f"an exponent above {MAX_EXPONENT} is not allowed")
        return super().call_binop(context, operator, left, right)


_env = _Sandbox(undefined=jinja2.StrictUndefined, autoescape=False, keep_trailing_newline=True)


@functools.lru_cache(maxsize=256)
def _template(source: str) -> jinja2.Template:
    return _env.from_string(source)


def clip(message: str) -> str:
    return message if len(message) <= ERROR_LIMIT else message[: ERROR_LIMIT - 1] + "…"


def check(action: dict, field: str = "body.action") -> dict:
    """The action as it is stored (only the members given), or a 422 naming the member at
    fault: a template that does not parse, an ``agent_id`` that names no agent (or one that
    lacks ``capability``), neither ``agent_id`` nor ``capability``."""
    try:
        _template(action["description"])
    except jinja2.TemplateSyntaxError as exc:
        raise Unprocessable(
            f"The description template does not parse: {exc.message} (line {exc.lineno}).",
            code="invalid_template",
            errors=[{"field": f"{field}.description", "message": f"line {exc.lineno}: {exc}"}],
        ) from None
    agent_id, capability = action.get("agent_id"), action.get("capability")
    if agent_id:
        agent = agents.get(agent_id)
        if agent is None:
            raise Unprocessable(
                f"No agent with id {agent_id!r}.",
                code="agent_not_found",
                errors=[{"field": f"{field}.agent_id", "message": "no such agent"}],
            )
        if capability and capability not in agent.capabilities:
            raise Unprocessable(
                f"Agent {agent_id!r} does not declare the capability {capability!r}.",
                code="capability_mismatch",
                errors=[{"field": f"{field}.capability", "message": "not declared by the agent"}],
            )
    elif not capability:
        raise Unprocessable(
            "Say which agent should do the task: agent_id or capability.",
            code="no_route",
            errors=[
                {"field": f"{field}.agent_id", "message": "agent_id or capability is required"}
            ],
        )
    return {key: value for key, value in action.items() if value is not None}


def render(source: str, context: dict) -> str:
    """``source`` rendered over ``context``; ActionFailed when it fails or its output is empty
    or longer than a task description may be."""
    try:
        chunks, size = [], 0
        for chunk in _template(source).generate(context):
            chunks.append(chunk)
            size += len(chunk)
            if size > MAX_DESCRIPTION:
                raise ActionFailed(
                    f"the description template rendered more than {MAX_DESCRIPTION} characters"
                )
    except ActionFailed:
        raise
    except jinja2.TemplateError as exc:
        raise ActionFailed(clip(f"the description template failed: {exc}")) from None
    except Exception as exc:  # a template's own runtime error (1 / 0, a bad comparison …)
        raise ActionFailed(
            clip(f"the description template failed: {type(exc).__name__}: {exc}")
        ) from None
    text = "".join(chunks)
    if not text.strip():
        raise ActionFailed("the description template rendered an empty description")
    if "\x00" in text:
        raise ActionFailed("the description template rendered a NUL character")
    return text


def run(action: dict, context: dict, *, created_by: str, trace_id: str) -> Task:
    """Carry out ``action`` (inside the caller's write transaction): the task it made, or
    ActionFailed (the template failed, no agent fits)."""
    body = {
        "description": render(action["description"], context),
        "agent_id": action.get("agent_id"),
        "capability": action.get("capability"),
        "priority": action.get("priority"),
    }
    try:
        return tasks.create(body, created_by=created_by, trace_id=trace_id)
    except Unprocessable as exc:
        raise ActionFailed(clip(exc.detail)) from None
