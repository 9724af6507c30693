"""Every request and response body of the contract has an example, and every example in it is
valid: Swagger UI's "Try it out" starts from them, and schemathesis' examples phase sends them.

- Coverage: each operation's request body and each response, per media type (binary ones
  aside), carries an example: on the media type, or on the schema it references (or, for an
  array, on its items' schema). What is missing is listed as ``operationId status media-type``.
- Validity: every ``example`` anywhere (on a schema at any depth, a media type, a parameter, a
  header; ``examples`` entries too) validates against its schema with OpenAPI 3.0 semantics
  (``openapi_schema_validator.OAS30Validator``: ``nullable``, the formats the hub uses, every
  ``$ref`` resolved in the document). A request body's examples are checked as writes
  (``readOnly`` members may be absent and must not be sent), a response's as reads
  (``writeOnly`` members likewise); a component schema's own example as whichever of the two
  its uses are, or neither when it is used both ways.
- Closed objects: an example may not carry a member its schema does not declare unless the
  schema says ``additionalProperties`` (true or a schema). This is Redocly's
  ``no-invalid-media-type-examples`` with ``allowAdditionalProperties: false``, which treats an
  object schema without ``additionalProperties`` as closed.
- An example is JSON: a YAML timestamp left unquoted is a ``datetime``, not a string.
"""

from __future__ import annotations

import copy
import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from openapi_schema_validator import (
    OAS30ReadValidator,
    OAS30Validator,
    OAS30WriteValidator,
    oas30_format_checker,
)
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT4

from hub.core import spec

METHODS = ("get", "put", "post", "delete", "patch", "head", "options", "trace")
BINARY = (
    "application/octet-stream",
    "application/gzip",
    "application/zip",
    "multipart/",
    "image/",
    "audio/",
    "video/",
)
DOCUMENT = "urn:aether:openapi"  # the contract's URI for ``$ref`` resolution
# Bodies that have no example yet, each with its reason. An entry that gets its example must
# leave this list (the test says so).
PENDING: dict[str, str] = {}  # "operationId status media-type" -> why it has no example yet


def _pointer(parts: tuple) -> str:
    return "#/" + "/".join(str(p).replace("~", "~0").replace("/", "~1") for p in parts)


def _resolve(doc: dict, node: dict) -> dict:
    while isinstance(node, dict) and "$ref" in node:
        target = doc
        for part in node["$ref"].removeprefix("#/").split("/"):
            target = target[part.replace("~1", "/").replace("~0", "~")]
        node = target
    return node


def _operations(doc: dict) -> Iterator[tuple[tuple, dict, dict]]:
    for path, item in doc["paths"].items():
        for method in METHODS:
            if method in item:
                yield ("paths", path, method), item, item[method]


def _bodies(doc: dict) -> Iterator[tuple[str, str, str, dict]]:
    """(operationId, ``request`` or the status, media type, media type object) of every body."""
    for _, _, op in _operations(doc):
        if "requestBody" in op:
            for media, content in _resolve(doc, op["requestBody"]).get("content", {}).items():
                yield op["operationId"], "request", media, content
        for status, response in op.get("responses", {}).items():
            for media, content in (_resolve(doc, response).get("content") or {}).items():
                yield op["operationId"], str(status), media, content


def _has_example(doc: dict, schema: dict | None) -> bool:
    """The schema (behind its ``$ref``) has an example, or is an array whose items have one."""
    schema = _resolve(doc, schema or {})
    if "example" in schema:
        return True
    items = schema.get("items")
    return schema.get("type") == "array" and isinstance(items, dict) and _has_example(doc, items)


def missing_examples(doc: dict) -> list[str]:
    """``operationId status media-type`` of each body without an example."""
    missing = []
    for operation_id, where, media, content in _bodies(doc):
        if media.startswith(BINARY) or "example" in content or content.get("examples"):
            continue
        if not _has_example(doc, content.get("schema")):
            missing.append(f"{operation_id} {where} {media}")
    return missing


# Where examples are: schemas, media types, parameters, headers.


@dataclass(frozen=True)
class Example:
    where: str  # a JSON pointer in the contract
    schema: str  # a JSON pointer to the schema it must fit
    value: object
    use: str  # "request", "response", or "" (a parameter, a header, or both ways)


def _subschemas(schema: dict, parts: tuple) -> Iterator[tuple[dict, tuple]]:
    """The schema and every schema inside it (not across ``$ref``), with their pointers."""
    if not isinstance(schema, dict) or "$ref" in schema:
        return
    yield schema, parts
    for name, member in (schema.get("properties") or {}).items():
        yield from _subschemas(member, (*parts, "properties", name))
    for key in ("items", "additionalProperties", "not"):
        if isinstance(schema.get(key), dict):
            yield from _subschemas(schema[key], (*parts, key))
    for key in ("allOf", "oneOf", "anyOf"):
        for index, branch in enumerate(schema.get(key) or []):
            yield from _subschemas(branch, (*parts, key, index))


def _schema_examples(schema: dict, parts: tuple, use: str) -> Iterator[Example]:
    for node, at in _subschemas(schema, parts):
        if "example" in node:
            yield Example(_pointer((*at, "example")), _pointer(at), node["example"], use)


def _own_examples(doc: dict, holder: dict, parts: tuple, use: str) -> Iterator[Example]:
    """A media type's, a parameter's or a header's ``example`` and ``examples`` values."""
    schema = _pointer((*parts, "schema"))
    if "example" in holder:
        yield Example(_pointer((*parts, "example")), schema, holder["example"], use)
    for name, named in (holder.get("examples") or {}).items():
        named = _resolve(doc, named)
        if "value" in named:
            yield Example(
                _pointer((*parts, "examples", name, "value")), schema, named["value"], use
            )


def _media_examples(doc: dict, content: dict, parts: tuple, use: str) -> Iterator[Example]:
    """A ``content`` map's examples (each media type's, and its inline schema's)."""
    for media, item in (content or {}).items():
        if "schema" in item:
            yield from _schema_examples(item["schema"], (*parts, media, "schema"), use)
            yield from _own_examples(doc, item, (*parts, media), use)


def _parameter_examples(doc: dict, parameter: dict, parts: tuple) -> Iterator[Example]:
    """A parameter's or a header's examples (a ``$ref`` is walked where it points)."""
    if "$ref" in parameter:
        return
    if "content" in parameter:
        yield from _media_examples(doc, parameter["content"], (*parts, "content"), "")
    elif "schema" in parameter:
        yield from _schema_examples(parameter["schema"], (*parts, "schema"), "")
        yield from _own_examples(doc, parameter, parts, "")


def _response_examples(doc: dict, response: dict, parts: tuple) -> Iterator[Example]:
    if "$ref" in response:
        return
    yield from _media_examples(doc, response.get("content"), (*parts, "content"), "response")
    for name, header in (response.get("headers") or {}).items():
        yield from _parameter_examples(doc, header, (*parts, "headers", name))


def _request_examples(doc: dict, body: dict, parts: tuple) -> Iterator[Example]:
    if "$ref" not in body:
        yield from _media_examples(doc, body.get("content"), (*parts, "content"), "request")


def _component_uses(doc: dict) -> dict[str, set[str]]:
    """Each component schema's uses: reached from a request body, a response, or neither."""
    uses: dict[str, set[str]] = {}

    def reach(schema: dict, use: str) -> None:
        for node, _ in _subschemas({"allOf": [schema]}, ()):
            for ref in _refs(node):
                name = ref.removeprefix("#/components/schemas/")
                if name != ref and use not in uses.setdefault(name, set()):
                    uses[name].add(use)
                    reach(doc["components"]["schemas"][name], use)

    for _, _, op in _operations(doc):
        for media in _resolve(doc, op.get("requestBody", {})).get("content", {}).values():
            reach(media.get("schema", {}), "request")
        for response in op.get("responses", {}).values():
            for media in (_resolve(doc, response).get("content") or {}).values():
                reach(media.get("schema", {}), "response")
    return uses


def _refs(schema: dict) -> Iterator[str]:
    """The ``$ref`` members directly under a schema (its own subschemas are walked apart)."""
    if "$ref" in schema:
        yield schema["$ref"]
    for key in ("items", "additionalProperties", "not"):
        if isinstance(schema.get(key), dict) and "$ref" in schema[key]:
            yield schema[key]["$ref"]
    for member in (schema.get("properties") or {}).values():
        if isinstance(member, dict) and "$ref" in member:
            yield member["$ref"]
    for key in ("allOf", "oneOf", "anyOf"):
        for branch in schema.get(key) or []:
            if isinstance(branch, dict) and "$ref" in branch:
                yield branch["$ref"]


def examples_in(doc: dict) -> Iterator[Example]:
    """Every example of the contract, with the schema it must fit and how that is used."""
    uses = _component_uses(doc)
    components = doc.get("components", {})
    for name, schema in components.get("schemas", {}).items():
        use = next(iter(uses[name])) if len(uses.get(name, ())) == 1 else ""
        yield from _schema_examples(schema, ("components", "schemas", name), use)
    for kind in ("parameters", "headers"):
        for name, parameter in components.get(kind, {}).items():
            yield from _parameter_examples(doc, parameter, ("components", kind, name))
    for name, body in components.get("requestBodies", {}).items():
        yield from _request_examples(doc, body, ("components", "requestBodies", name))
    for name, response in components.get("responses", {}).items():
        yield from _response_examples(doc, response, ("components", "responses", name))
    for path, item in doc["paths"].items():
        for index, parameter in enumerate(item.get("parameters", [])):
            yield from _parameter_examples(doc, parameter, ("paths", path, "parameters", index))
    for parts, _, op in _operations(doc):
        for index, parameter in enumerate(op.get("parameters", [])):
            yield from _parameter_examples(doc, parameter, (*parts, "parameters", index))
        if "requestBody" in op:
            yield from _request_examples(doc, op["requestBody"], (*parts, "requestBody"))
        for status, response in op.get("responses", {}).items():
            yield from _response_examples(doc, response, (*parts, "responses", str(status)))


# Validation.


def closed(doc: dict) -> dict:
    """The contract with every object schema that declares properties but says nothing of
    others made closed (``additionalProperties: false``), as Redocly checks examples."""
    doc = copy.deepcopy(doc)
    roots = list(doc.get("components", {}).get("schemas", {}).values())
    for _, _, op in _operations(doc):
        bodies = [_resolve(doc, op.get("requestBody", {}))]
        bodies += [_resolve(doc, response) for response in op.get("responses", {}).values()]
        for body in bodies:
            roots += [media.get("schema", {}) for media in (body.get("content") or {}).values()]
    for root in roots:
        for node, _ in _subschemas(root, ()):
            if "properties" in node and "additionalProperties" not in node:
                node["additionalProperties"] = False
    return doc


def _not_json(value, at: str = "$") -> Iterator[str]:
    if isinstance(value, dict):
        for key, member in value.items():
            yield from _not_json(member, f"{at}.{key}")
    elif isinstance(value, list):
        for index, member in enumerate(value):
            yield from _not_json(member, f"{at}[{index}]")
    elif isinstance(value, (dt.date, dt.datetime, dt.time)):
        yield f"{at}: {value!r} is a YAML timestamp, not JSON: quote it"
    elif not isinstance(value, (str, int, float, bool, type(None))):
        yield f"{at}: {type(value).__name__} is not JSON"


VALIDATORS = {"request": OAS30WriteValidator, "response": OAS30ReadValidator, "": OAS30Validator}


def invalid_examples(doc: dict) -> list[str]:
    """``<where>: <path in the example>: <why>`` for each example that does not fit."""
    registries = [
        Registry().with_resource(DOCUMENT, Resource.from_contents(d, default_specification=DRAFT4))
        for d in (doc, closed(doc))
    ]
    errors = []
    for example in examples_in(doc):
        found = list(_not_json(example.value))
        if not found:
            schema = {"$ref": DOCUMENT + example.schema}
            for registry in registries:
                validator = VALIDATORS[example.use](
                    schema, registry=registry, format_checker=oas30_format_checker
                )
                for error in validator.iter_errors(example.value):
                    message = f"{error.json_path}: {error.message}"
                    if message not in found:
                        found.append(message)
        errors += [f"{example.where}: {message}" for message in found]
    return errors


def _report(title: str, lines: list[str]) -> str:
    return f"{title} ({len(lines)}):\n  " + "\n  ".join(lines)


def test_every_body_has_an_example():
    missing = missing_examples(spec.load())
    unexplained = [entry for entry in missing if entry not in PENDING]
    if unexplained:
        pytest.fail(_report("bodies without an example", unexplained), pytrace=False)
    stale = sorted(set(PENDING) - set(missing))
    if stale:
        message = _report("PENDING entries with an example now: remove them", stale)
        pytest.fail(message, pytrace=False)


def test_every_example_fits_its_schema():
    errors = invalid_examples(spec.load())
    if errors:
        pytest.fail(_report("examples that do not fit their schema", errors), pytrace=False)


@pytest.fixture
def broken() -> dict:
    return copy.deepcopy(spec.load())


def test_a_body_without_an_example_is_named(broken):
    del broken["components"]["schemas"]["Session"]["example"]
    missing = missing_examples(broken)
    assert "get_session 200 application/json" in missing
    assert "create_session 201 application/json" in missing


def test_an_example_that_breaks_its_schema_is_named(broken):
    schemas = broken["components"]["schemas"]
    schemas["Agent"]["example"]["status"] = "sleeping"
    schemas["AgentCreate"]["example"]["colour"] = "blue"  # not a member of AgentCreate
    schemas["Task"]["example"]["created_at"] = dt.datetime(2026, 12, 3, 15, 11)  # unquoted
    schemas["Session"]["example"]["closed_at"] = "03/12/2026"  # not RFC 3339
    del schemas["Memory"]["example"]["key"]
    not_found = broken["components"]["responses"]["NotFound"]["content"]
    not_found["application/problem+json"]["example"]["status"] = "404"
    broken["components"]["parameters"]["Limit"]["example"] = 0

    text = "\n".join(invalid_examples(broken))

    assert "#/components/schemas/Agent/example: $.status: 'sleeping' is not one of [" in text
    assert (
        "#/components/schemas/AgentCreate/example: $: Additional properties are not allowed"
        " ('colour' was unexpected)"
    ) in text
    assert "#/components/schemas/Task/example: $.created_at: datetime.datetime(2026, 12, 3" in text
    assert "#/components/schemas/Session/example: $.closed_at: '03/12/2026' is not a" in text
    assert "#/components/schemas/Memory/example: $: 'key' is a required property" in text
    assert (
        "#/components/responses/NotFound/content/application~1problem+json/example:"
        " $.status: '404' is not of type 'integer'"
    ) in text
    assert "#/components/parameters/Limit/example: $: 0 is less than the minimum of 1" in text


def test_an_undeclared_member_of_an_open_looking_schema_is_named(broken):
    """A schema with ``properties`` and no ``additionalProperties`` is closed for examples."""
    schemas = broken["components"]["schemas"]
    schemas["Probe"] = {
        "type": "object",
        "properties": {"name": {"type": "string"}},
        "example": {"name": "a", "extra": 1},
    }
    schemas["OpenProbe"] = {
        "type": "object",
        "properties": {"name": {"type": "string"}},
        "additionalProperties": True,
        "example": {"name": "a", "extra": 1},
    }
    errors = invalid_examples(broken)
    assert [e for e in errors if "Probe" in e] == [
        "#/components/schemas/Probe/example: $: Additional properties are not allowed "
        "('extra' was unexpected)"
    ]


def test_write_only_and_read_only_members_follow_the_direction(broken):
    """A request may send a writeOnly member but not a readOnly one; a response the reverse."""
    schemas = broken["components"]["schemas"]
    assert "api_key" in schemas["ProviderPut"]["example"]  # writeOnly, in a request: fine
    assert not [e for e in invalid_examples(broken) if "ProviderPut" in e]
    schemas["Provider"]["properties"]["api_key"] = {"type": "string", "writeOnly": True}
    schemas["Provider"]["example"]["api_key"] = "sk-example"
    schemas["AgentCreate"]["properties"]["version"] = {"type": "integer", "readOnly": True}
    schemas["AgentCreate"]["example"]["version"] = 2

    text = "\n".join(invalid_examples(broken))

    assert "#/components/schemas/Provider/example: $.api_key: Tried to read write-only" in text
    assert "#/components/schemas/AgentCreate/example: $.version: Tried to write read-only" in text
