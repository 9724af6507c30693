"""Everything that shares a trace id."""

from __future__ import annotations

from db import traces
from hub.core.problems import require


def get_trace(trace_id):
    """Everything that shares a trace."""
    return require(traces.gather(trace_id), "trace", trace_id), 200
