"""The agent loop: call the model; when it answers with tool calls, run them, feed the
results back, and call it again, up to the agent's ``max_steps`` model calls.

Tasks (``hub.runtime.worker``), chat turns (``hub.engine.turns``) and the OpenAI-compatible
chat completions of an agent (``hub.engine.completions``) run it. Its whole state
is a JSON document (:class:`LoopState`: the messages so far and the tool calls not yet
answered), so a loop that must wait for a person (a tool with ``requires_approval``) stops
holding anything: the owner stores the state with the pending approval, and once the
approval is decided a new loop picks the state up and goes on exactly where it stopped.

A tool's failure goes back to the model as the tool's result (``{"error": …}``), never out
of the loop. *Client tools* (``client_tools``: offered to the model, run by whoever asked) are
never run here: a model call that asks for one ends the run with the ``handoff`` outcome,
carrying those calls, once the agent's own calls of that model call have run. A provider's
failure (a :class:`~hub.core.problems.Problem`) is raised to the owner.

Steps (each model call and each tool call, with timing) and the usage row of each model call
are buffered in :attr:`AgentLoop.pending` and written by the owner in the transaction that
records the outcome (one transaction for a task without tools), or by :meth:`flush` before a
tool runs, so a long loop shows its progress.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from db import approvals as db_approvals
from db.base import after_commit, in_write_transaction, utcnow, write_transaction
from db.tasks import Step, next_step_index
from hub.core.aio import until_stopped
from hub.engine import disclosure
from hub.llm import (
    ChatMessage,
    CompletionRequest,
    GuardedProvider,
    StreamEnd,
    TokenDelta,
    ToolCall,
    ToolCallDelta,
    ToolSpec,
    count_tokens,
)
from hub.services import tool_groups, usage
from hub.services import tools as tool_service
from hub.services.toolkit import Call, ToolDef

Emit = Callable[[dict], Awaitable[None]]


# --- state -------------------------------------------------------------------------------


def message_to_json(message: ChatMessage) -> dict:
    out: dict[str, Any] = {"role": message.role, "content": message.content}
    if message.tool_calls:
        out["tool_calls"] = [
            {"id": c.id, "name": c.name, "arguments": c.arguments} for c in message.tool_calls
        ]
    if message.tool_call_id:
        out["tool_call_id"] = message.tool_call_id
    if message.name:
        out["name"] = message.name
    return out


def message_from_json(data: dict) -> ChatMessage:
    calls = [ToolCall(c["id"], c["name"], c["arguments"]) for c in data.get("tool_calls") or []]
    return ChatMessage(
        role=data["role"],
        content=data.get("content"),
        tool_calls=calls or None,
        tool_call_id=data.get("tool_call_id"),
        name=data.get("name"),
    )


@dataclass
class LoopState:
    """Everything needed to go on: JSON-serialisable (``to_json``/``from_json``)."""

    messages: list[dict]
    model_calls: int = 0
    pending_calls: list[dict] = field(default_factory=list)
    text: str = ""  # every piece of text the model produced so far, as streamed
    skills: list[dict] = field(default_factory=list)  # loaded: hub.engine.disclosure

    def to_json(self) -> dict:
        return {
            "messages": self.messages,
            "model_calls": self.model_calls,
            "pending_calls": self.pending_calls,
            "text": self.text,
            "skills": self.skills,
        }

    @classmethod
    def from_json(cls, data: dict) -> LoopState:
        return cls(
            messages=data["messages"],
            model_calls=data.get("model_calls", 0),
            pending_calls=data.get("pending_calls", []),
            text=data.get("text", ""),
            skills=data.get("skills", []),
        )

    @classmethod
    def start(cls, messages: list[ChatMessage]) -> LoopState:
        return cls(messages=[message_to_json(m) for m in messages])


@dataclass
class Outcome:
    """How a run ended: ``completed``, ``paused`` (``approval`` waits), ``stopped`` or
    ``handoff`` (``client_calls`` are for the caller to run)."""

    kind: str
    state: LoopState
    finish_reason: str = "stop"
    final_text: str = ""
    approval: Any = None  # the approval still pending, when paused on one
    ask: dict | None = None  # the approval to create, when paused on a new one
    prompt_tokens: int = 0
    completion_tokens: int = 0
    client_calls: list[ToolCall] = field(default_factory=list)


# --- the loop ----------------------------------------------------------------------------


@dataclass
class Owner:
    """Who runs the loop: a task (``tsk_…``), a chat turn (``trn_…``) or an OpenAI-compatible
    chat completion (``chatcmpl_…``, which stores no steps: nothing would show them)."""

    id: str
    attempt: int
    agent_id: str
    max_steps: int
    session_id: str | None = None
    trace_id: str | None = None

    @property
    def call(self) -> Call:
        if self.id.startswith("chatcmpl_"):
            return Call(caller=f"openai:{self.id}", agent_id=self.agent_id, trace_id=self.trace_id)
        if self.id.startswith("tsk_"):
            return Call(
                caller=f"task:{self.id}",
                agent_id=self.agent_id,
                task_id=self.id,
                trace_id=self.trace_id,
            )
        return Call(
            caller=f"turn:{self.id}",
            agent_id=self.agent_id,
            turn_id=self.id,
            session_id=self.session_id,
            trace_id=self.trace_id,
        )

    @property
    def usage_source(self) -> str:
        if self.id.startswith("chatcmpl_"):
            return "openai"
        return "task" if self.id.startswith("tsk_") else "chat"

    @property
    def keeps_steps(self) -> bool:
        return not self.id.startswith("chatcmpl_")


class AgentLoop:
    def __init__(
        self,
        *,
        owner: Owner,
        provider: GuardedProvider,
        model: str,
        tools: dict[str, ToolDef],
        temperature: float | None = None,
        max_tokens: int | None = None,
        emit: Emit | None = None,
        stop: asyncio.Event | None = None,
        should_stop: Callable[[], Awaitable[bool]] | None = None,
        client_tools: list[ToolSpec] | None = None,
        options: dict[str, Any] | None = None,
        skills: list[disclosure.Offer] | None = None,
    ) -> None:
        """``options`` are more :class:`CompletionRequest` fields for every model call, but
        a ``tool_choice`` that forces a call (``required``, a named function) applies to the
        first model call of a run only, so the loop cannot call tools forever. ``skills`` are
        the skills offered (``tools`` then holds their ``load_skill`` and ``read_skill_file``).
        """
        self.owner = owner
        self.provider = provider
        self.model = model
        self.tools = tools
        self.skills = {offer.name: offer for offer in skills or []}
        self.temperature = temperature
        self.max_tokens = max_tokens
        self.client_tools = list(client_tools or [])
        self.options = dict(options or {})
        self._model_calls = 0
        self._handoff: list[ToolCall] = []
        self._handoff_text = ""
        self._emit = emit
        self.stop = stop or asyncio.Event()
        self._should_stop = should_stop
        self.pending: list[tuple[str, dict]] = []  # ("step" | "usage", fields) to write
        self.first_token_at: float | None = None
        self.prompt_tokens = 0
        self.completion_tokens = 0
        self._approval = None
        self._ask: dict | None = None

    # --- helpers -------------------------------------------------------------------------

    async def emit(self, event: dict) -> None:
        if self._emit is not None:
            await self._emit(event)

    async def stopping(self) -> bool:
        if self.stop.is_set():
            return True
        if self._should_stop is not None and await self._should_stop():
            self.stop.set()
        return self.stop.is_set()

    def _step(self, **fields: Any) -> None:
        self.pending.append(("step", fields))

    def write_pending(self) -> None:
        """Write the buffered steps and usage rows (inside the caller's transaction). They
        leave the buffer once that transaction commits: one that rolls back (the database
        went away) leaves them for the next try."""
        if not self.pending:
            return
        index = next_step_index(self.owner.id) if self.owner.keeps_steps else 0
        written = len(self.pending)
        for kind, fields in self.pending:
            if kind == "step":
                if not self.owner.keeps_steps:
                    continue
                Step.create(
                    owner_id=self.owner.id, index=index, attempt=self.owner.attempt, **fields
                )
                index += 1
            else:
                usage.record(**fields)
        if in_write_transaction():
            after_commit(lambda: self.pending.__delitem__(slice(0, written)))
        else:
            del self.pending[:written]

    def flush(self) -> None:
        """Write the buffered steps in a transaction of their own (a worker thread)."""
        if self.pending:
            with write_transaction():
                self.write_pending()

    # --- run -----------------------------------------------------------------------------

    async def run(self, loop_state: LoopState) -> Outcome:
        while True:
            while loop_state.pending_calls:
                if await self.stopping():
                    return self._outcome("stopped", loop_state, "stopped")
                raw = loop_state.pending_calls[0]
                call = ToolCall(raw["id"], raw["name"], raw["arguments"])
                answer = await self._tool(call, loop_state)
                if answer is None:  # waits for a person
                    return self._outcome("paused", loop_state, "approval_required")
                loop_state.messages.append(
                    message_to_json(
                        ChatMessage(
                            role="tool", content=answer, tool_call_id=call.id, name=call.name
                        )
                    )
                )
                loop_state.pending_calls.pop(0)
            if self._handoff:
                outcome = self._outcome("handoff", loop_state, "tool_calls", self._handoff_text)
                outcome.client_calls = self._handoff
                return outcome
            if loop_state.model_calls >= self.owner.max_steps:
                return self._outcome("completed", loop_state, "max_steps", _last_text(loop_state))
            if await self.stopping():
                return self._outcome("stopped", loop_state, "stopped")
            text, calls, finish = await self._model(loop_state)
            loop_state.model_calls += 1
            loop_state.text += text
            if self.stop.is_set():
                return self._outcome("stopped", loop_state, "stopped", text)
            loop_state.messages.append(
                message_to_json(
                    ChatMessage(role="assistant", content=text or None, tool_calls=calls or None)
                )
            )
            if not calls:
                return self._outcome("completed", loop_state, finish, text)
            theirs = {t.name for t in self.client_tools}
            self._handoff = [c for c in calls if c.name in theirs]
            self._handoff_text = text
            loop_state.pending_calls = [
                {"id": c.id, "name": c.name, "arguments": c.arguments}
                for c in calls
                if c.name not in theirs
            ]

    def _outcome(self, kind: str, loop_state: LoopState, finish: str, text: str = "") -> Outcome:
        outcome = Outcome(kind, loop_state, finish, text)
        outcome.approval = self._approval
        outcome.ask = self._ask
        outcome.prompt_tokens, outcome.completion_tokens = (
            self.prompt_tokens,
            self.completion_tokens,
        )
        return outcome

    # --- one model call ------------------------------------------------------------------

    async def _model(self, loop_state: LoopState) -> tuple[str, list[ToolCall], str]:
        tools = disclosure.narrowed(self.tools, loop_state.skills)
        offered = [ToolSpec(t.name, t.description, t.parameters) for t in tools.values()]
        offered += self.client_tools
        options = dict(self.options)
        if self._model_calls and options.get("tool_choice") not in (None, "auto", "none"):
            options.pop("tool_choice")  # forced once; after that the model decides
        self._model_calls += 1
        request = CompletionRequest(
            model=self.model,
            messages=[message_from_json(m) for m in loop_state.messages],
            temperature=self.temperature,
            max_tokens=self.max_tokens,
            tools=offered or None,
            **options,
        )
        started_at, started = utcnow(), time.perf_counter()
        first: float | None = None
        parts: list[str] = []
        calls: list[ToolCall] = []
        end: StreamEnd | None = None
        step = {
            "kind": "llm",
            "name": f"{self.provider.id}/{self.model}",
            "input": {"messages": len(request.messages), "tools": [t.name for t in offered]},
            "started_at": started_at,
        }
        if self.skills:
            step["input"]["skills"] = [
                {"name": o.name, "version": o.version} for o in self.skills.values()
            ]
        try:
            async for event in until_stopped(self.provider.stream(request), self.stop):
                if isinstance(event, TokenDelta):
                    if first is None:
                        first = time.perf_counter()
                        self.first_token_at = self.first_token_at or first
                    parts.append(event.text)
                    await self.emit({"type": "token", "text": event.text})
                elif isinstance(event, ToolCallDelta):
                    calls.append(event.call)
                elif isinstance(event, StreamEnd):
                    end = event
        except Exception as exc:
            latency = _ms(started, time.perf_counter())
            self._step(**step, status="error", output=None, error=str(exc), duration_ms=latency)
            self._usage("error", 0, 0, latency, None)
            raise
        text = "".join(parts)
        latency = _ms(started, time.perf_counter())
        if end is not None:
            prompt, completion = end.usage.prompt_tokens, end.usage.completion_tokens
        else:  # stopped: count what was produced
            prompt = sum(count_tokens(m.content) for m in request.messages)
            completion = count_tokens(text)
        self.prompt_tokens += prompt
        self.completion_tokens += completion
        output = {"text": text, "tool_calls": [{"id": c.id, "name": c.name} for c in calls]}
        self._step(
            **step,
            status="ok",
            output=output,
            prompt_tokens=prompt,
            completion_tokens=completion,
            duration_ms=latency,
        )
        self._usage("ok", prompt, completion, latency, _ms(started, first))
        return text, calls, (end.finish_reason if end else "stopped")

    def _usage(self, status: str, prompt: int, completion: int, latency, ttft) -> None:
        self.pending.append(
            (
                "usage",
                {
                    "source": self.owner.usage_source,
                    "provider": self.provider.id,
                    "model": self.model,
                    "status": status,
                    "prompt_tokens": prompt,
                    "completion_tokens": completion,
                    "latency_ms": latency,
                    "ttft_ms": ttft,
                    "agent_id": self.owner.agent_id,
                    "session_id": self.owner.session_id,
                    "turn_id": self.owner.id if self.owner.id.startswith("trn_") else None,
                },
            )
        )

    # --- one tool call -------------------------------------------------------------------

    async def _tool(self, call: ToolCall, loop_state: LoopState) -> str | None:
        """The tool's answer as the model will read it, or ``None`` when a person must
        decide first: ``self._ask`` then describes the approval to create (the owner stores
        it with the paused state, in one transaction), or ``self._approval`` is the one
        still pending. The owner emits ``approval_required`` once it is stored."""
        await self.emit(
            {
                "type": "tool_call",
                "call": {"id": call.id, "name": call.name, "arguments": call.arguments},
            }
        )
        tool = disclosure.narrowed(self.tools, loop_state.skills).get(call.name)
        approval = None
        if tool is not None and tool.requires_approval:
            approval = await asyncio.to_thread(db_approvals.for_call, self.owner.id, call.id)
            if approval is None:
                self._ask = {
                    "tool": call.name,
                    "arguments": call.arguments,
                    "tool_call_id": call.id,
                    "agent_id": self.owner.agent_id,
                    "owner_id": self.owner.id,
                    "session_id": self.owner.session_id,
                }
                return None
            if approval.status == "pending":
                self._approval = approval
                return None
        started_at, started = utcnow(), time.perf_counter()
        await asyncio.to_thread(self.flush)
        if tool is None:
            error = f"no tool named {call.name!r} is available to this agent"
            if call.name in self.tools:
                named = ", ".join(e["name"] for e in loop_state.skills if "allowed_tools" in e)
                error = f"{call.name!r} is outside the allowed-tools of the loaded skills ({named})"
            status, result, execution = "error", None, None
        elif approval is not None and approval.status != "approved":
            reason = (
                "denied by an operator" if approval.status == "denied" else "not approved in time"
            )
            if approval.comment:
                reason += f": {approval.comment}"
            execution = await asyncio.to_thread(
                tool_service.record,
                tool.name,
                call.arguments,
                "denied",
                None,
                reason,
                0.0,
                self.owner.call,
                approval.id,
            )
            status, result, error = "denied", None, reason
        else:
            execution = await tool_service.run(
                tool, call.arguments, self.owner.call, approval_id=approval.id if approval else None
            )
            status, result, error = execution.status, execution.result, execution.error
            if status == "ok" and call.name == disclosure.LOAD:
                await self._loaded(result, loop_state)
        self._step(
            kind="tool",
            name=call.name,
            status=status,
            input={"id": call.id, "arguments": call.arguments},
            output=result,
            error=error,
            approval_id=approval.id if approval else None,
            tool_execution_id=execution.id if execution else None,
            started_at=started_at,
            duration_ms=_ms(started, time.perf_counter()),
        )
        event = {"type": "tool_result", "call_id": call.id, "name": call.name, "status": status}
        event.update({"result": result} if status == "ok" else {"error": error})
        await self.emit(event)
        if status == "ok":
            return json.dumps(result)
        return json.dumps({"error": error, "status": status})

    async def _loaded(self, result: dict, loop_state: LoopState) -> None:
        """Record a skill ``load_skill`` answered: from now its allowed-tools apply."""
        offer = self.skills.get(result["name"])
        if offer is not None and all(e["name"] != offer.name for e in loop_state.skills):
            loop_state.skills.append(await asyncio.to_thread(disclosure.loaded_entry, offer))


def _last_text(loop_state: LoopState) -> str:
    for message in reversed(loop_state.messages):
        if message["role"] == "assistant" and message.get("content"):
            return message["content"]
    return ""


def _ms(start: float, end: float | None) -> float | None:
    return None if end is None else round((end - start) * 1000, 3)


def agent_toolset(
    agent, offered: list[disclosure.Offer] | None = None
) -> tuple[dict[str, ToolDef], list[disclosure.Offer]]:
    """What a run of ``agent`` may use: its tools, and the skills it is offered (``offered``
    when already read) with the two tools that read them (reads the database: a worker
    thread)."""
    tools = agent_tools(agent.tools) if agent.tools else {}
    if offered is None:
        offered = disclosure.offers(agent.skills or [])
    return {**tools, **disclosure.tools_for(offered)}, offered


def agent_tools(names: list[str]) -> dict[str, ToolDef]:
    """The agent's tools that exist (built-in or registered), by name; ``group:<name>``
    stands for the group's tools."""
    found = {}
    for name in tool_groups.expand(names):
        tool = tool_service.resolve(name)
        if tool is not None:
            found[name] = tool
    return found
