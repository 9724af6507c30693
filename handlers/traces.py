"""Everything that shares a trace id."""

from __future__ import annotations

from db import traces
from hub.core.problems import require
from hub.http import context
from hub.services.toolkit import redacted_for_viewer


def get_trace(trace_id):
    """Everything that shares a trace."""
    found = require(traces.gather(trace_id), "trace", trace_id)
    return context.for_caller(found, redacted_for_viewer), 200
