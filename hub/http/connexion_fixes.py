"""The places where the hub changes Connexion 3.3's behaviour, each with its reason.

:func:`apply` installs them (idempotent; ``create_app`` calls it). Each has a test in
``tests/http/test_connexion_fixes.py`` that fails if Connexion changes under it. The fixes
that need no patch (non-UTF-8 bodies, the ``Allow`` header on 405) live in the edge
middleware, where the request passes anyway.
"""

from __future__ import annotations

import copy
import hashlib
import json

import connexion.frameworks.starlette as connexion_starlette
from connexion.operations import OpenAPIOperation
from connexion.spec import OpenAPISpecification, Specification

from hub.core.problems import PROBLEM_JSON

_applied = False


def route_path_parameters_as_strings() -> None:
    """Route every path parameter as a plain string and let validation type it: Connexion's
    typed route converters turn ``/versions/abc/promote`` into a 404 instead of a 400 naming
    the field."""
    connexion_starlette.PATH_PARAMETER_CONVERTERS = {"path": "path"}


def produce_only_success_media_types() -> None:
    """Handlers only ever produce the success media type; problem+json comes from the error
    handlers. Without this, an operation that declares both makes Connexion refuse every plain
    dict a handler returns ("Multiple response content types"), and a 204 would be labelled a
    problem."""
    OpenAPIOperation.produces = property(
        lambda self: [t for t in self._produces if t != PROBLEM_JSON]
    )


_validate_spec = OpenAPISpecification._validate_spec.__func__
_validated: set[str] = set()


_fingerprints: dict[int, tuple[dict, str]] = {}


def _fingerprint(raw_spec: dict) -> str:
    """A digest of the document; computed once per document object (``create_app`` passes
    the one parsed contract every time, which is never changed)."""
    known = _fingerprints.get(id(raw_spec))
    if known is not None and known[0] is raw_spec:
        return known[1]
    digest = hashlib.sha256(json.dumps(raw_spec, sort_keys=True, default=str).encode()).hexdigest()
    _fingerprints[id(raw_spec)] = (raw_spec, digest)  # keeps the object, so its id stays its own
    return digest


def _validate_spec_once(cls, raw_spec) -> None:
    fingerprint = _fingerprint(raw_spec)
    if fingerprint not in _validated:
        _validate_spec(cls, raw_spec)
        _validated.add(fingerprint)


def validate_each_document_once() -> None:
    """Connexion validates the whole document against the OpenAPI meta-schema each time an
    app is built (~0.2 s). ``make check`` validates it too; within a process, validate a
    document once."""
    OpenAPISpecification._validate_spec = classmethod(_validate_spec_once)


_load_specification = Specification.load.__func__
_specifications: dict[tuple[type, str], Specification] = {}


def _load_specification_once(cls, spec, *, arguments=None):
    if not isinstance(spec, dict) or arguments:
        return _load_specification(cls, spec, arguments=arguments)
    key = (cls, _fingerprint(spec))
    built = _specifications.get(key)
    if built is None:
        built = _specifications[key] = _load_specification(cls, copy.deepcopy(spec))
    return built


def resolve_each_document_once() -> None:
    """Connexion parses and resolves the whole contract for every app (~40 ms). The parsed
    specification is read-only to Connexion (every middleware of one app already shares it),
    so apps built from an identical document in one process share it."""
    Specification.load = classmethod(_load_specification_once)


def apply() -> None:
    global _applied
    if _applied:
        return
    route_path_parameters_as_strings()
    produce_only_success_media_types()
    validate_each_document_once()
    resolve_each_document_once()
    _applied = True
