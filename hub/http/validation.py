"""Request validators that answer every malformed input with a 400 problem naming the field.

Connexion's defaults answer a non-UTF-8 body with a 500 and put errors in a free-text detail;
these subclasses fix both once for every operation.
"""

from __future__ import annotations

import json
import re
from typing import Any

import yaml
from connexion.datastructures import MediaTypeDict
from connexion.validators import (
    VALIDATOR_MAP,
    JSONRequestBodyValidator,
    MultiPartFormDataValidator,
    ParameterValidator,
)
from jsonschema import ValidationError
from starlette.formparsers import MultiPartException

from hub.core.problems import ValidationFailed

_REQUIRED = re.compile(r"^'(.+)' is a required property$")
_UNEXPECTED = re.compile(r"\('(.+?)'(?:, '.+')* (?:was|were) unexpected\)")


def _field(error: ValidationError, root: str = "body") -> str:
    """Where an error is: ``body.memory.top_k``, the missing or the unexpected property."""
    path = [str(part) for part in error.absolute_path]
    if (error.validator == "required" and (match := _REQUIRED.match(error.message))) or (
        error.validator == "additionalProperties" and (match := _UNEXPECTED.search(error.message))
    ):
        path.append(match.group(1))
    return ".".join([root, *path]) if path else root


MAX_DEPTH = 64  # nesting of arrays and objects in a JSON body
# Digits of a JSON integer: Python converts at most this many (past it int() raises). Free-form
# members (payloads, metadata) keep big integers as they are; typed ones are bounded by the
# contract's minimum/maximum.
MAX_INTEGER_DIGITS = 4300


class _NotJSON:
    """A value ``json.loads`` produced from something that is not portable JSON."""

    def __init__(self, literal: str, why: str) -> None:
        self.literal, self.why = literal, why


def _parse_constant(name: str) -> _NotJSON:
    return _NotJSON(name, f"{name} is not a JSON number")


def _parse_int(literal: str) -> int | _NotJSON:
    if len(literal.lstrip("-")) > MAX_INTEGER_DIGITS:
        return _NotJSON(literal[:20], f"an integer of more than {MAX_INTEGER_DIGITS} digits")
    return int(literal)


def _parse_float(literal: str) -> float | _NotJSON:
    value = float(literal)
    if value in (float("inf"), float("-inf")):
        return _NotJSON(literal, "the number is too large to represent")
    return value


def _location(path: list) -> str:
    return ".".join(["body", *(str(part) for part in path)])


def check_portable(value: Any) -> None:
    """Refuse, with a 400 naming the field, what JSON parsed but the hub cannot keep or emit
    as JSON: ``NaN``/``Infinity``, integers of thousands of digits, numbers that overflow, lone
    UTF-16 surrogates, nesting deeper than ``MAX_DEPTH``. Iterative: a hostile depth never
    reaches Python's recursion limit."""
    stack: list[tuple[Any, list, int]] = [(value, [], 0)]
    while stack:
        item, path, depth = stack.pop()
        if isinstance(item, _NotJSON):
            raise ValidationFailed(
                f"{_location(path)}: {item.why}.",
                errors=[{"field": _location(path), "message": item.why}],
            )
        if isinstance(item, str):
            _check_text(item, path)
        elif isinstance(item, dict | list):
            if depth >= MAX_DEPTH:
                message = f"nested deeper than {MAX_DEPTH} levels"
                raise ValidationFailed(
                    f"{_location(path)}: {message}.",
                    errors=[{"field": _location(path), "message": message}],
                )
            if isinstance(item, dict):
                for key, child in item.items():
                    _check_text(key, path)
                    stack.append((child, [*path, key], depth + 1))
            else:
                stack.extend((child, [*path, i], depth + 1) for i, child in enumerate(item))


def _check_text(text: str, path: list) -> None:
    """Lone UTF-16 surrogates (``"\\ud800"``) are valid JSON but not storable text."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ValidationFailed(
            "The body contains a lone UTF-16 surrogate, which is not valid text.",
            errors=[{"field": _location(path), "message": "invalid unicode"}],
        ) from exc


def parse_json(text: str) -> Any:
    """``text`` as JSON the hub can keep: a 400 problem for anything else."""
    try:
        body = json.loads(
            text,
            parse_constant=_parse_constant,
            parse_int=_parse_int,
            parse_float=_parse_float,
        )
    except json.JSONDecodeError as exc:
        raise ValidationFailed(
            f"The body is not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno}).",
            errors=[{"field": "body", "message": exc.msg}],
            code="malformed_json",
        ) from exc
    except RecursionError as exc:
        message = f"nested deeper than {MAX_DEPTH} levels"
        raise ValidationFailed(
            f"The body is {message}.",
            errors=[{"field": "body", "message": message}],
        ) from exc
    check_portable(body)
    return body


_SIZE_RULES = {
    "maxItems": ("items", "at most"),
    "minItems": ("items", "at least"),
    "maxProperties": ("members", "at most"),
    "minProperties": ("members", "at least"),
}


def _message(error: ValidationError, root: Any) -> str:
    """jsonschema's message, except inside a write-only member (a secret, credentials): its
    rule only, since the message would echo the rejected value back; and for a size rule on
    an array or object the counts, since jsonschema's message repeats the whole value (a
    batch of 1,001 tasks)."""
    if _write_only(root, error.absolute_schema_path):
        return f"does not meet {error.validator} {error.validator_value!r} (value not shown)"
    if error.validator in _SIZE_RULES and isinstance(error.instance, (list, dict)):
        noun, bound = _SIZE_RULES[error.validator]
        return f"has {len(error.instance)} {noun}; {bound} {error.validator_value} allowed"
    return error.message[:500]


def _write_only(node: Any, path) -> bool:
    """Whether a schema on ``path`` (from ``node``, the root) is ``writeOnly``."""
    for part in path:
        if isinstance(node, dict) and node.get("writeOnly"):
            return True
        try:
            node = node[part]
        except (KeyError, IndexError, TypeError):
            return False
    return isinstance(node, dict) and bool(node.get("writeOnly"))


def _utf8(raw: bytes, code: str) -> str:
    """The body as text, or a 400 naming the first byte that is not UTF-8."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ValidationFailed(
            "The body is not valid UTF-8.",
            errors=[{"field": "body", "message": f"invalid UTF-8 at byte {exc.start}"}],
            code=code,
        ) from exc


class HubJSONBodyValidator(JSONRequestBodyValidator):
    async def _parse(self, stream, scope) -> Any:
        text = _utf8(b"".join([chunk async for chunk in stream]), "malformed_json")
        if not text.strip():
            return None
        return parse_json(text)

    def _validate(self, body: Any) -> dict | None:
        if body is None and not self._required:
            return None
        if body is None:
            raise ValidationFailed(
                "A JSON body is required.",
                errors=[{"field": "body", "message": "required"}],
            )
        errors = sorted(self._validator.iter_errors(body), key=lambda e: list(e.absolute_path))
        if errors:
            root = self._validator.schema
            details = [{"field": _field(e), "message": _message(e, root)} for e in errors[:20]]
            first = details[0]
            raise ValidationFailed(f"{first['field']}: {first['message']}", errors=details)
        return None


class _NoAliases(yaml.SafeLoader):
    """YAML's safe loader without anchors and aliases (a few aliases nest into a billion
    nodes: the 'billion laughs')."""

    def compose_node(self, parent, index):
        if self.check_event(yaml.AliasEvent):
            mark = self.peek_event().start_mark
            raise yaml.YAMLError(f"line {mark.line + 1}: anchors and aliases are not accepted")
        return super().compose_node(parent, index)


def parse_yaml(raw: bytes) -> Any:
    """A YAML body as the JSON value it spells (dates become RFC 3339 strings), or a 400."""
    text = _utf8(raw, "malformed_yaml")
    try:
        value = yaml.load(text, Loader=_NoAliases)
        value = json.loads(json.dumps(value, default=_yaml_scalar, allow_nan=False))
    except (yaml.YAMLError, ValueError, TypeError, RecursionError) as exc:
        message = str(exc).splitlines()[0][:300] if str(exc) else type(exc).__name__
        raise ValidationFailed(
            f"The body is not valid YAML: {message}",
            errors=[{"field": "body", "message": message}],
            code="malformed_yaml",
        ) from None
    check_portable(value)
    return value


def _yaml_scalar(value: Any) -> str:
    if hasattr(value, "isoformat"):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not a JSON value")


class HubYAMLBodyValidator(HubJSONBodyValidator):
    """An ``application/yaml`` body: parsed safely, then checked against the same schema as
    its JSON form."""

    async def _parse(self, stream, scope) -> Any:
        raw = b"".join([chunk async for chunk in stream])
        if not raw.strip():
            return None
        return parse_yaml(raw)


class HubParameterValidator(ParameterValidator):
    def validate_request(self, request) -> None:
        getters = {
            "query": self.validate_query_parameter,
            "path": self.validate_path_parameter,
            "header": self.validate_header_parameter,
            "cookie": self.validate_cookie_parameter,
        }
        errors = []
        if self.strict_validation:
            extra = self.validate_query_parameter_list(
                request, security_params=self.security_query_params
            )
            errors += [{"field": f"query.{name}", "message": "unknown parameter"} for name in extra]
        for location, check in getters.items():
            for param in self.parameters.get(location, []):
                message = check(param, request)
                if message:
                    # jsonschema's message runs on with the whole schema: keep the first line.
                    message = message.strip().splitlines()[0]
                    errors.append({"field": f"{location}.{param['name']}", "message": message})
        if errors:
            first = errors[0]
            raise ValidationFailed(f"{first['field']}: {first['message']}", errors=errors)


class HubMultiPartValidator(MultiPartFormDataValidator):
    """A ``multipart/form-data`` body that does not parse (no boundary, broken parts) is a 400
    naming the body, not the 500 Starlette's parser error would make."""

    async def _parse(self, stream, scope) -> dict:
        try:
            return await super()._parse(stream, scope)
        except MultiPartException as exc:
            raise ValidationFailed(
                f"The multipart body does not parse: {exc}",
                errors=[{"field": "body", "message": str(exc)}],
                code="malformed_multipart",
            ) from exc


def validator_map() -> dict:
    body = MediaTypeDict(dict(VALIDATOR_MAP["body"]))
    body["*/*json"] = HubJSONBodyValidator
    body["multipart/form-data"] = HubMultiPartValidator
    body["application/yaml"] = HubYAMLBodyValidator
    return {**VALIDATOR_MAP, "parameter": HubParameterValidator, "body": body}
