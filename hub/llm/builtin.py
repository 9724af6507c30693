"""The built-in provider (kind ``builtin``): offline, deterministic, for demos and tests.

Two models:

``echo``
    Replies ``"Echo: " + <the latest user message>``, streamed token by token.

``scripted``
    Follows directives, one per line, in the latest user message:

    ``/tool NAME {json arguments}``
        The turn calls tool ``NAME`` (arguments may be omitted: ``{}``). Consecutive
        ``/tool`` lines make one turn with several calls, in order. Ids are ``call_1``,
        ``call_2`` … numbered across the whole script, so they are deterministic and unique
        within the conversation. Once the results are back (an assistant message with
        ``tool_calls`` follows the latest user message), the model goes on with the
        directives after that group of ``/tool`` lines; each assistant tool-call message
        after the latest user message counts as one group done.
    ``/reply TEXT``
        Streams ``TEXT`` token by token. Several ``/reply`` lines in a turn are joined with
        a newline.
    ``/error STATUS``
        Fails as an upstream answering ``STATUS`` (400 to 599) would: :class:`UpstreamError`,
        or :class:`UpstreamTimeout` for 408 and 504. Tokens already streamed stay streamed,
        so ``/reply a b\\n/error 500`` fails mid-stream.
    ``/sleep MS``
        Waits ``MS`` milliseconds (at most 60 000) before going on.

    Directives may be indented. A line that is not a valid directive (an unknown
    ``/word``, bad JSON or a non-object after ``/tool``, a non-numeric ``/sleep``, a status
    outside 400 to 599) is plain text, never an error. Plain text is ignored when the message
    holds at least one valid directive; a message with none is answered like ``echo``.

Both models honour ``max_tokens`` (stopping before the delta that would exceed it, finish
reason ``length``). They are deterministic: each token has probability 1, so ``temperature``,
``top_p``, ``frequency_penalty``, ``presence_penalty`` and ``seed`` leave the answer as it
is, which honours them. The other OpenAI parameters:

``n``
    ``n`` choices, generated one after the other (identical, the models being deterministic).
``stop``
    The answer ends where a stop sequence would begin (the sequence is not part of it), and
    nothing after it happens (no later text, tool call or error); finish reason ``stop``.
``tool_choice``
    ``none`` skips the turn's ``/tool`` lines; ``auto`` is the default; ``required`` and a
    named function are honoured when the turn calls a tool (that one), else refused.
``parallel_tool_calls``
    ``false`` is refused when a turn of the script makes several calls at once.
``response_format``
    ``json_object`` and ``json_schema`` are honoured when every remaining turn's reply is a
    JSON object (fitting the schema), else refused; ``echo`` never answers JSON.
``logit_bias``
    Refused when not empty: these models have no token ids to bias.
``user``
    Accepted: it only identifies the end user to an upstream, and there is none.

Refusals come from :meth:`BuiltinProvider.check`, before anything is generated, as
:class:`UnsupportedParameter` naming the parameter. Usage: prompt tokens are
:func:`count_tokens` over every message's content (counted once however many choices);
completion tokens are those of the reply text plus those of each tool call's JSON
arguments, summed over the choices. ``complete()`` collects ``stream()``, so both behave the
same. An unknown model fails like an upstream answering 404.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import jsonschema

from hub.llm.base import (
    ChatMessage,
    CompletionRequest,
    Provider,
    StreamEnd,
    StreamEvent,
    TokenDelta,
    ToolCall,
    ToolCallDelta,
    UnsupportedParameter,
    UpstreamError,
    Usage,
    count_prompt_tokens,
    count_tokens,
    upstream_failure,
)

MODELS = ("echo", "scripted")
MAX_SLEEP_MS = 60_000

_TOOL = re.compile(r"^/tool[ \t]+([A-Za-z0-9_.:-]+)[ \t]*(.*)$")
_REPLY = re.compile(r"^/reply(?:[ \t](.*))?$")
_ERROR = re.compile(r"^/error[ \t]+(\d{3})[ \t]*$")
_SLEEP = re.compile(r"^/sleep[ \t]+(\d+(?:\.\d+)?)[ \t]*$")
_TOKEN_BOUNDARY = re.compile(r"(?<=\s)(?=\S)")


@dataclass(frozen=True)
class Tool:
    name: str
    arguments: dict[str, Any]


@dataclass(frozen=True)
class Reply:
    text: str


@dataclass(frozen=True)
class Error:
    status: int


@dataclass(frozen=True)
class Sleep:
    seconds: float


Directive = Tool | Reply | Error | Sleep


def parse_directive(line: str) -> Directive | None:
    """The directive on ``line``, or ``None`` when it is plain text."""
    line = line.lstrip()
    if match := _TOOL.match(line):
        raw = match.group(2).strip() or "{}"
        try:
            arguments = json.loads(raw)
        except ValueError:
            return None
        return Tool(match.group(1), arguments) if isinstance(arguments, dict) else None
    if match := _REPLY.match(line):
        return Reply(match.group(1) or "")
    if match := _ERROR.match(line):
        status = int(match.group(1))
        return Error(status) if 400 <= status <= 599 else None
    if match := _SLEEP.match(line):
        return Sleep(min(float(match.group(1)), MAX_SLEEP_MS) / 1000)
    return None


def parse_script(text: str) -> list[Directive]:
    """Every valid directive in ``text``, in order (empty: the message is plain text)."""
    return [d for d in map(parse_directive, text.splitlines()) if d is not None]


def split_rounds(script: list[Directive]) -> list[list[Directive]]:
    """Cut the script after each run of consecutive ``/tool`` directives: one list per
    model turn."""
    rounds: list[list[Directive]] = [[]]
    for directive, following in zip(script, [*script[1:], None], strict=True):
        rounds[-1].append(directive)
        ends_group = following is not None and not isinstance(following, Tool)
        if isinstance(directive, Tool) and ends_group:
            rounds.append([])
    return rounds


def tokens(text: str) -> list[str]:
    """Split ``text`` into word tokens that keep their trailing whitespace (the first keeps
    any leading whitespace too), so that ``"".join(tokens(text)) == text``."""
    return [part for part in _TOKEN_BOUNDARY.split(text) if part]


def latest_user_index(messages: list[ChatMessage]) -> int:
    """Index of the last ``user`` message, -1 when there is none."""
    for i in range(len(messages) - 1, -1, -1):
        if messages[i].role == "user":
            return i
    return -1


class BuiltinProvider(Provider):
    """Offline, deterministic models ``echo`` and ``scripted`` (see the module docstring)."""

    kind = "builtin"

    def __init__(self, id: str = "builtin") -> None:
        self.id = id

    def __repr__(self) -> str:
        return f"BuiltinProvider(id={self.id!r})"

    def models(self) -> list[str]:
        return list(MODELS)

    def check(self, request: CompletionRequest) -> None:
        """Refuse what this model cannot honour for this conversation (module docstring)."""
        if request.logit_bias:
            raise UnsupportedParameter(
                "logit_bias", "The builtin models have no token ids: logit_bias cannot apply."
            )
        if request.model not in MODELS:
            return  # the stream fails like an upstream answering 404
        rounds, done, _ = self._plan(request)
        left = rounds[done:] or [[]]
        choice = request.tool_choice
        if choice == "required" or isinstance(choice, dict):
            wanted = choice["function"]["name"] if isinstance(choice, dict) else None
            calls = [d.name for d in left[0] if isinstance(d, Tool)]
            if not calls or (wanted and set(calls) != {wanted}):
                what = f"call {wanted!r}" if wanted else "call a tool"
                raise UnsupportedParameter(
                    "tool_choice",
                    f"builtin/{request.model} does not {what} in its answer to this "
                    "conversation (a /tool line of builtin/scripted makes a call).",
                    code="unsupported_value",
                )
        if request.parallel_tool_calls is False and any(
            sum(isinstance(d, Tool) for d in turn) > 1 for turn in left
        ):
            raise UnsupportedParameter(
                "parallel_tool_calls",
                f"builtin/{request.model}'s script makes several tool calls in one turn.",
                code="unsupported_value",
            )
        kind = (request.response_format or {}).get("type") or "text"
        if kind != "text":
            for turn in left:
                replies = [d.text for d in turn if isinstance(d, Reply)]
                if replies and (why := _not_json(request, _cut("\n".join(replies), request))):
                    raise UnsupportedParameter(
                        "response_format",
                        f"builtin/{request.model} cannot answer this as {kind}: {why}",
                        code="unsupported_value",
                    )

    def _plan(self, request: CompletionRequest) -> tuple[list[list[Directive]], int, int]:
        """The script's turns, how many are done, and the number of this turn's first call."""
        at = latest_user_index(request.messages)
        text = (request.messages[at].content or "") if at >= 0 else ""
        script = parse_script(text) if request.model == "scripted" else []
        if not script:
            script = [Reply("Echo: " + text)]
        rounds = split_rounds(script)
        done = sum(1 for m in request.messages[at + 1 :] if m.role == "assistant" and m.tool_calls)
        first_call = sum(isinstance(d, Tool) for r in rounds[:done] for d in r) + 1
        return rounds, done, first_call

    async def stream(self, request: CompletionRequest) -> AsyncIterator[StreamEvent]:
        if request.model not in MODELS:
            raise UpstreamError(
                f"Model {request.model!r} not found; the builtin provider offers "
                f"{', '.join(MODELS)}.",
                upstream_status=404,
                provider=self.id,
            )
        rounds, done, first_call = self._plan(request)
        directives = rounds[done] if done < len(rounds) else []
        reasons: list[str] = []
        completion = 0
        for index in range(request.choices):
            outcome: list = []
            async for event in self._choice(request, directives, first_call, index, outcome):
                yield event
            reasons.append(outcome[0])
            completion += outcome[1]
        usage = Usage(count_prompt_tokens(request.messages), completion)
        yield StreamEnd(reasons[0], usage, tuple(reasons) if len(reasons) > 1 else ())

    async def _choice(
        self,
        request: CompletionRequest,
        directives: list[Directive],
        first_call: int,
        index: int,
        outcome: list,
    ) -> AsyncIterator[StreamEvent]:
        """One choice's events; ``outcome`` receives its finish reason and completion tokens."""
        replies_text = "\n".join(d.text for d in directives if isinstance(d, Reply))
        cut = _stop_at(replies_text, request)
        limit = request.token_limit
        emitted = ""
        replies = 0
        calls: list[ToolCall] = []
        finish = "stop"
        ended = False
        for directive in directives:
            if isinstance(directive, Sleep):
                await asyncio.sleep(directive.seconds)
            elif isinstance(directive, Error):
                raise upstream_failure(
                    directive.status,
                    f"The scripted model failed with status {directive.status}.",
                    provider=self.id,
                )
            elif isinstance(directive, Tool):
                if request.tool_choice == "none":
                    continue
                number = first_call + len(calls)
                call = ToolCall(f"call_{number}", directive.name, directive.arguments)
                calls.append(call)
                finish = "tool_calls"
                yield ToolCallDelta(call, index)
            else:
                text = ("\n" if replies else "") + directive.text
                replies += 1
                for piece in tokens(text):
                    if cut is not None and len(emitted) + len(piece) >= cut:
                        piece, ended = piece[: cut - len(emitted)], True
                    if limit is not None and count_tokens(emitted + piece) > limit:
                        finish, ended = "length", True
                        break
                    if piece:
                        emitted += piece
                        yield TokenDelta(piece, index)
                        await asyncio.sleep(0)  # let a caller cancel between tokens
                    if ended:
                        break
                if ended:
                    break
        if ended and finish != "length":
            finish = "stop"
        completion = count_tokens(emitted) + sum(
            count_tokens(json.dumps(c.arguments)) for c in calls
        )
        outcome += [finish, completion]


def _stop_at(text: str, request: CompletionRequest) -> int | None:
    """Where the earliest stop sequence begins in ``text`` (``None``: nowhere)."""
    found = [text.find(s) for s in request.stop or () if s in text]
    return min(found) if found else None


def _cut(text: str, request: CompletionRequest) -> str:
    """``text`` as the stop sequences leave it."""
    at = _stop_at(text, request)
    return text if at is None else text[:at]


def _not_json(request: CompletionRequest, reply: str) -> str | None:
    """Why ``reply`` does not fit ``request.response_format`` (``None``: it fits)."""
    try:
        value = json.loads(reply)
    except ValueError:
        return f"its reply {reply[:60]!r} is not JSON"
    if not isinstance(value, dict):
        return "its reply is not a JSON object"
    spec = (request.response_format or {}).get("json_schema") or {}
    schema = spec.get("schema")
    if schema is None:
        return None
    checker = jsonschema.validators.validator_for(schema)
    try:
        checker.check_schema(schema)
    except jsonschema.SchemaError as exc:
        return f"json_schema.schema is not a valid JSON Schema ({exc.message})"
    error = jsonschema.exceptions.best_match(checker(schema).iter_errors(value))
    return None if error is None else f"its reply does not fit the schema ({error.message})"
