"""JSON log lines: one per request (logger ``aether.access``) plus the hub's own messages."""

from __future__ import annotations

import json
import logging
import sys
import time

_RESERVED = set(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"message"}


class JSONFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key not in _RESERVED and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            error = record.exc_info[1]
            if getattr(error, "log_as_line", False):
                # an expected outage (the database out of reach): one line, not a traceback
                # per retry of every loop
                entry["error"] = str(error).strip().splitlines()[0][:300]
            else:
                entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def _not_a_choice_of_body(record: logging.LogRecord) -> bool:
    """Connexion warns, outside the hub's JSON log, that an operation declaring two request
    media types (JSON or YAML, a SKILL.md or an upload) "uses application/json": it only
    picks a default there, and each request is validated by its own ``Content-Type``."""
    return not record.getMessage().startswith("this operation accepts multiple content types")


def configure(level: str) -> None:
    logging.getLogger("connexion.operations.openapi3").addFilter(_not_a_choice_of_body)
    root = logging.getLogger("aether")
    if not any(getattr(h, "_aether", False) for h in root.handlers):
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(JSONFormatter())
        handler._aether = True  # type: ignore[attr-defined]
        root.addHandler(handler)
        root.propagate = False
    set_level(level)


def set_level(level: str) -> None:
    logging.getLogger("aether").setLevel(level.upper())
