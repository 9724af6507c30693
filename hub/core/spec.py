"""The contract, loaded once: the document as written, operation policies and path templates
read from openapi.yaml."""

from __future__ import annotations

import functools
import json
import re
from dataclasses import dataclass
from pathlib import Path

import yaml

SPEC_PATH = Path(__file__).resolve().parents[2] / "openapi.yaml"
METHODS = ("get", "put", "post", "delete", "patch", "head", "options", "trace")


@dataclass(frozen=True)
class OperationPolicy:
    operation_id: str  # as in the spec, e.g. "list_agents"
    tag: str
    method: str
    path: str
    role: str  # public | viewer | operator | admin
    confirm: bool  # needs X-Confirm: yes
    idempotent_create: bool  # declares Idempotency-Key
    public_setting: str | None  # a setting that, when false, makes a public op need a key
    secret_fields: tuple[str, ...] = ()  # members of a 2xx answer marked x-aether-secret
    body_media_types: tuple[str, ...] = ()  # the request body's media types, if it takes one
    success_status: int = 200  # its first declared 2xx: what the audit records for a change
    names_created: bool = False  # a 2xx answer declares a Location: the audit names it

    @property
    def handler(self) -> str:
        return f"handlers.{self.tag}.{self.operation_id}"


@functools.cache
def document() -> bytes:
    """openapi.yaml as written (read once: what the hub serves is what it was built from)."""
    return SPEC_PATH.read_bytes()


@functools.cache
def load() -> dict:
    """The parsed contract (libyaml's loader when available: the spec is large)."""
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    return yaml.load(document(), Loader=loader)


@functools.cache
def document_json() -> bytes:
    """The same document as JSON: ``$ref`` and ``servers`` as written."""
    return json.dumps(load(), ensure_ascii=False).encode()


def _param_names(spec: dict, params: list) -> set[str]:
    names = set()
    for param in params:
        if "$ref" in param:
            param = spec["components"]["parameters"][param["$ref"].rsplit("/", 1)[-1]]
        names.add(param["name"])
    return names


def _secret_fields(spec: dict, op: dict) -> tuple[str, ...]:
    """The members of the operation's 2xx JSON answers marked ``x-aether-secret: true``: a
    secret shown once (an API key's), which nothing may keep (idempotency records)."""
    fields: list[str] = []
    for status, response in op.get("responses", {}).items():
        if not str(status).startswith("2"):
            continue
        media = response.get("content", {}).get("application/json", {})
        schema = media.get("schema", {})
        if "$ref" in schema:
            schema = spec["components"]["schemas"][schema["$ref"].rsplit("/", 1)[-1]]
        for name, member in schema.get("properties", {}).items():
            if member.get("x-aether-secret") and name not in fields:
                fields.append(name)
    return tuple(fields)


def _declares_location(spec: dict, op: dict) -> bool:
    for code, response in op["responses"].items():
        if str(code).startswith("2"):
            if "$ref" in response:
                response = spec["components"]["responses"][response["$ref"].rsplit("/", 1)[-1]]
            if "Location" in (response.get("headers") or {}):
                return True
    return False


@functools.cache
def policies() -> dict[str, OperationPolicy]:
    """Policies keyed by the resolved handler name (``handlers.<tag>.<operationId>``)."""
    spec = load()
    out: dict[str, OperationPolicy] = {}
    for path, item in spec["paths"].items():
        for method in METHODS:
            op = item.get(method)
            if op is None:
                continue
            params = _param_names(spec, item.get("parameters", []) + op.get("parameters", []))
            policy = OperationPolicy(
                operation_id=op["operationId"],
                tag=op["tags"][0],
                method=method.upper(),
                path=path,
                role=op["x-aether-role"],
                confirm=bool(op.get("x-aether-confirm")),
                idempotent_create="Idempotency-Key" in params,
                public_setting=op.get("x-aether-public-setting"),
                secret_fields=_secret_fields(spec, op),
                body_media_types=tuple(op.get("requestBody", {}).get("content", {})),
                success_status=min(
                    (int(code) for code in op["responses"] if str(code).startswith("2")),
                    default=200,
                ),
                names_created=_declares_location(spec, op),
            )
            out[policy.handler] = policy
    return out


@functools.cache
def _path_patterns() -> list[tuple[re.Pattern, str, frozenset[str]]]:
    """(regex, template, methods) per spec path, most specific (fewest parameters) first."""
    spec = load()
    patterns = []
    for path, item in spec["paths"].items():
        regex = re.sub(r"\\\{[^}]+\\\}", "[^/]+", re.escape(path))
        methods = frozenset(m.upper() for m in METHODS if m in item)
        patterns.append((re.compile(f"^{regex}$"), path, methods))
    patterns.sort(key=lambda entry: entry[1].count("{"))
    return patterns


def resolve_path(path: str) -> tuple[str, frozenset[str]] | None:
    """The spec path a concrete request path belongs to, and its methods.

    A literal segment wins over a parameter: ``/api/v1/agents/seed`` is the seed path (POST
    only), never the agent called ``seed``.
    """
    for pattern, template, methods in _path_patterns():
        if pattern.match(path):
            return template, methods
    return None


def allowed_methods(path: str) -> list[str]:
    """The methods the spec defines for a concrete request path (empty if none matches)."""
    resolved = resolve_path(path)
    return sorted(resolved[1]) if resolved else []


@functools.cache
def literal_segments() -> frozenset[str]:
    """Path segments that stand where a parameter could (``seed`` beside ``{agent_id}``)."""
    spec = load()
    out = set()
    for path in spec["paths"]:
        head, _, last = path.rpartition("/")
        if "{" not in last and any(
            other.startswith(head + "/{") and other.count("/") == path.count("/")
            for other in spec["paths"]
        ):
            out.add(last)
    return frozenset(out)
