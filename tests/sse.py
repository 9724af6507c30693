"""Reading server-sent events in tests."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator


def frames(lines: Iterable[str]) -> Iterator[dict]:
    """The SSE blocks in ``lines``: ``{"comment": text}`` for a comment-only block, else
    ``{"id", "event", "data"}`` with ``data`` parsed as JSON."""
    block: dict = {}
    for line in lines:
        if line == "":
            if block:
                yield block
            block = {}
        elif line.startswith(":"):
            block["comment"] = line[1:].strip()
        else:
            name, _, value = line.partition(":")
            assert name in {"id", "event", "data"}, line
            assert name not in block, f"{name} twice in one event"
            block[name] = value.removeprefix(" ")
            if name == "data":
                block["data"] = json.loads(block["data"])
    if block:
        yield block
