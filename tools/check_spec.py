"""Validate openapi.yaml and enforce the house rules.

- the document is valid OpenAPI 3.0 (openapi-spec-validator);
- every operation has exactly one tag, an operationId, a summary and ``x-aether-role``;
- every operationId resolves to a function in ``handlers.<tag>``, and every public function
  of a handler module is used by the spec;
- every operation declares the problems it can answer: 401/403/429 when authenticated,
  400 with parameters or a body, 413/415 with a body, 404 with path parameters,
  412 with ``If-Match``, 428 when ``x-aether-confirm``, 503 when it touches the database
  (every operation but the liveness probe); 4xx responses are problem+json
  (OpenAI's error shape, as application/json, on the ``/v1`` paths);
- a list that answers ``next_cursor`` takes ``limit`` and ``cursor``;
- every response declares the headers the hub sends with it: ``X-Request-Id`` on all of them
  (``/v1`` too), ``Location`` on a 201 (whose handler sends it), ``ETag`` on each 2xx with a body
  when the handler sends one, ``Retry-After`` on 429 and 503, ``Idempotent-Replayed`` on the
  2xx of an operation taking ``Idempotency-Key``, which also declares the 409 a reused or
  busy key answers.
  (``tests/assertions.py`` checks the other direction at run time: every one of these
  headers a handler test receives is declared for that status.)
"""

from __future__ import annotations

import ast
import functools
import importlib
import inspect
import sys
import warnings
from pathlib import Path

import yaml
from openapi_spec_validator import validate

ROOT = Path(__file__).resolve().parent.parent
METHODS = ("get", "put", "post", "delete", "patch", "head", "options", "trace")
ROLES = {"public", "viewer", "operator", "admin"}
NO_DATABASE = {"get_liveness", "get_openapi_json", "get_openapi_yaml"}  # never touch the database


def load_spec() -> dict:
    return yaml.safe_load((ROOT / "openapi.yaml").read_text())


def operations(spec: dict):
    for path, item in spec["paths"].items():
        for method in METHODS:
            if method in item:
                yield path, method, item, item[method]


def _resolve(spec: dict, node: dict) -> dict:
    while "$ref" in node:
        parts = node["$ref"].lstrip("#/").split("/")
        node = spec
        for part in parts:
            node = node[part]
    return node


@functools.cache
def _functions(module_name: str) -> dict[str, ast.AST]:
    tree = ast.parse(inspect.getsource(importlib.import_module(module_name)))
    kinds = (ast.FunctionDef, ast.AsyncFunctionDef)
    return {node.name: node for node in tree.body if isinstance(node, kinds)}


def sends(module_name: str, function: str, header: str) -> bool:
    """Whether the handler names ``header`` as a string constant, itself or in a function of
    its module that it calls (``_one(...)`` building the headers): it sends the header."""
    functions, seen, todo = _functions(module_name), set(), [function]
    while todo:
        name = todo.pop()
        if name in seen or name not in functions:
            continue
        seen.add(name)
        for node in ast.walk(functions[name]):
            if isinstance(node, ast.Constant) and node.value == header:
                return True
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
                todo.append(node.func.id)
    return False


def header_errors(spec: dict, where: str, op: dict, handler: str, params: list) -> list[str]:
    """The headers each response must declare (see the module's docstring)."""
    module, function = handler.rsplit(".", 1)
    idempotent = any(p["name"] == "Idempotency-Key" for p in params)
    errors = []
    if idempotent and "409" not in {str(code) for code in op["responses"]}:
        errors.append(f"{where}: takes Idempotency-Key but does not declare 409")
    for code, response in op["responses"].items():
        code = str(code)
        response = _resolve(spec, response)
        declared = set(response.get("headers") or {})
        needed = {"X-Request-Id"}
        if code == "201":
            needed.add("Location")
            if not sends(module, function, "Location"):
                errors.append(f"{where}: answers 201 but {handler} sends no Location")
        if code.startswith("2") and response.get("content"):
            if sends(module, function, "ETag"):
                needed.add("ETag")
            if idempotent:
                needed.add("Idempotent-Replayed")
        if code in ("429", "503"):
            needed.add("Retry-After")
        for header in sorted(needed - declared):
            errors.append(f"{where}: {code} does not declare the {header} header")
    return errors


def is_public(spec: dict, op: dict) -> bool:
    security = op.get("security", spec.get("security", []))
    return security == [] or {} in security


def check(spec: dict) -> list[str]:
    errors: list[str] = []
    used: dict[str, set[str]] = {}
    for path, method, item, op in operations(spec):
        where = f"{method.upper()} {path}"
        tags = op.get("tags") or []
        if len(tags) != 1:
            errors.append(f"{where}: needs exactly one tag, has {tags}")
            continue
        tag, op_id = tags[0], op.get("operationId")
        if not op_id:
            errors.append(f"{where}: no operationId")
            continue
        if not op.get("summary"):
            errors.append(f"{where}: no summary")
        role = op.get("x-aether-role")
        if role not in ROLES:
            errors.append(f"{where}: x-aether-role must be one of {sorted(ROLES)}")
        if (role == "public") != is_public(spec, op):
            errors.append(
                f"{where}: x-aether-role 'public' iff the operation's security allows none"
            )
        try:
            module = importlib.import_module(f"handlers.{tag}")
        except ImportError as exc:
            errors.append(f"{where}: handlers.{tag} does not import: {exc}")
            continue
        if not callable(getattr(module, op_id, None)):
            errors.append(f"{where}: handlers.{tag}.{op_id} does not exist")
        used.setdefault(tag, set()).add(op_id)

        params = [_resolve(spec, p) for p in item.get("parameters", []) + op.get("parameters", [])]
        codes = {str(code) for code in op.get("responses", {})}
        required = set()
        if not is_public(spec, op) or op.get("x-aether-public-setting"):
            required |= {"401", "429"}
            if role != "public":
                required.add("403")
        if params or "requestBody" in op:
            required.add("400")
        if "requestBody" in op:
            required |= {"413", "415"}
        if any(p["in"] == "path" for p in params):
            required.add("404")
        if op_id not in NO_DATABASE:
            required.add("503")  # the database can be out of reach: a retryable 503, not a 500
        if any(p["name"] == "If-Match" for p in params):
            required.add("412")
        if op.get("x-aether-confirm"):
            required.add("428")
            if not any(p["name"] == "X-Confirm" for p in params):
                errors.append(f"{where}: x-aether-confirm without the XConfirm parameter")
        missing = sorted(required - codes)
        if missing:
            errors.append(f"{where}: does not declare {', '.join(missing)}")
        names = {p["name"] for p in params}
        for response in op.get("responses", {}).values():
            media = _resolve(spec, response).get("content", {}).get("application/json", {})
            schema = _resolve(spec, media.get("schema", {}))
            if "next_cursor" in schema.get("properties", {}) and not {"limit", "cursor"} <= names:
                errors.append(f"{where}: answers next_cursor but does not take limit and cursor")
        if callable(getattr(module, op_id, None)):
            errors.extend(header_errors(spec, where, op, f"handlers.{tag}.{op_id}", params))
        # Errors are problem+json, except on the OpenAI-compatible /v1 paths (OpenAI's shape).
        error_type = "application/json" if path.startswith("/v1/") else "application/problem+json"
        for code, response in op.get("responses", {}).items():
            response = _resolve(spec, response)
            if str(code).startswith("4") and error_type not in response.get("content", {}):
                errors.append(f"{where}: {code} must be {error_type}")

    handlers_dir = ROOT / "handlers"
    for file in sorted(handlers_dir.glob("*.py")):
        if file.name.startswith("_"):
            continue
        tag = file.stem
        module = importlib.import_module(f"handlers.{tag}")
        for name, fn in inspect.getmembers(module, inspect.isfunction):
            if fn.__module__ != module.__name__ or name.startswith("_"):
                continue
            if name not in used.get(tag, set()):
                errors.append(f"handlers/{file.name}: {name} is not an operation of the spec")
    return errors


def main() -> int:
    sys.path.insert(0, str(ROOT))
    warnings.simplefilter("ignore")  # importing handlers imports starlette's test client
    spec = load_spec()
    try:
        validate(spec)
    except Exception as exc:  # the validator raises several exception types
        print(f"openapi.yaml is not valid OpenAPI: {exc}", file=sys.stderr)
        return 1
    errors = check(spec)
    for error in errors:
        print(error, file=sys.stderr)
    if errors:
        return 1
    count = sum(1 for _ in operations(spec))
    print(f"openapi.yaml: valid, {count} operations follow the house rules")
    return 0


if __name__ == "__main__":
    sys.exit(main())
