"""The contract, loaded once: operation policies and path templates read from openapi.yaml."""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from pathlib import Path

import yaml

SPEC_PATH = Path(__file__).resolve().parent.parent / "openapi.yaml"
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

    @property
    def handler(self) -> str:
        return f"handlers.{self.tag}.{self.operation_id}"


@functools.cache
def load() -> dict:
    return yaml.safe_load(SPEC_PATH.read_text())


def _param_names(spec: dict, params: list) -> set[str]:
    names = set()
    for param in params:
        if "$ref" in param:
            param = spec["components"]["parameters"][param["$ref"].rsplit("/", 1)[-1]]
        names.add(param["name"])
    return names


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
            )
            out[policy.handler] = policy
    return out


@functools.cache
def _path_patterns() -> list[tuple[re.Pattern, frozenset[str]]]:
    spec = load()
    patterns = []
    for path, item in spec["paths"].items():
        regex = re.sub(r"\\\{[^}]+\\\}", "[^/]+", re.escape(path))
        methods = frozenset(m.upper() for m in METHODS if m in item)
        patterns.append((re.compile(f"^{regex}$"), methods))
    return patterns


def allowed_methods(path: str) -> list[str]:
    """The methods the spec defines for a concrete request path (empty if none matches).

    The union over every matching template: ``GET /agents/seed`` is routed to
    ``/agents/{agent_id}``, so it is allowed there even though ``/agents/seed`` is POST-only.
    """
    methods: set[str] = set()
    for pattern, allowed in _path_patterns():
        if pattern.match(path):
            methods |= allowed
    return sorted(methods)
