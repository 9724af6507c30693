"""Request validators that answer every malformed input with a 400 problem naming the field.

Connexion's defaults answer a non-UTF-8 body with a 500 and put errors in a free-text detail;
these subclasses fix both once for every operation.
"""

from __future__ import annotations

import json
import re
from typing import Any

from connexion.datastructures import MediaTypeDict
from connexion.validators import (
    VALIDATOR_MAP,
    JSONRequestBodyValidator,
    ParameterValidator,
)
from jsonschema import ValidationError

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


def _reject_surrogates(value: Any) -> None:
    """Lone UTF-16 surrogates (``"\\ud800"``) are valid JSON but not storable text."""
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise ValidationFailed(
                "The body contains a lone UTF-16 surrogate, which is not valid text.",
                errors=[{"field": "body", "message": "invalid unicode"}],
            ) from exc
    elif isinstance(value, dict):
        for key, item in value.items():
            _reject_surrogates(key)
            _reject_surrogates(item)
    elif isinstance(value, list):
        for item in value:
            _reject_surrogates(item)


class HubJSONBodyValidator(JSONRequestBodyValidator):
    async def _parse(self, stream, scope) -> Any:
        raw = b"".join([chunk async for chunk in stream])
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ValidationFailed(
                "The body is not valid UTF-8.",
                errors=[{"field": "body", "message": f"invalid UTF-8 at byte {exc.start}"}],
                code="malformed_json",
            ) from exc
        if not text.strip():
            return None
        try:
            body = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValidationFailed(
                f"The body is not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno}).",
                errors=[{"field": "body", "message": exc.msg}],
                code="malformed_json",
            ) from exc
        _reject_surrogates(body)
        return body

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
            details = [{"field": _field(e), "message": e.message[:500]} for e in errors[:20]]
            first = details[0]
            raise ValidationFailed(f"{first['field']}: {first['message']}", errors=details)
        return None


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


def validator_map() -> dict:
    body = MediaTypeDict(dict(VALIDATOR_MAP["body"]))
    body["*/*json"] = HubJSONBodyValidator
    return {**VALIDATOR_MAP, "parameter": HubParameterValidator, "body": body}
