"""Prometheus metrics, registered once per process on the default registry (which also
carries the process and platform collectors)."""

from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, Counter, Gauge, Histogram, Info
from prometheus_client import generate_latest as _generate_latest

HTTP_REQUESTS = Counter(
    "http_requests_total",
    "HTTP requests answered, by operationId, method and status.",
    ("operation_id", "method", "status"),
)
HTTP_DURATION = Histogram(
    "http_request_duration_seconds",
    "Time to answer an HTTP request, by operationId, method and status.",
    ("operation_id", "method", "status"),
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
HTTP_IN_FLIGHT = Gauge("http_requests_in_flight", "HTTP requests being served right now.")
WS_CLIENTS = Gauge("aether_websocket_clients", "Open WebSocket connections.")
DRAINING = Gauge("aether_draining", "1 while this instance is draining.")
AUDIT_ENTRIES = Counter("aether_audit_entries_total", "Audit log entries written.")
RATE_LIMITED = Counter("aether_rate_limited_total", "Requests refused by the rate limit.")
HEADER_TIMEOUTS = Counter(
    "aether_header_timeouts_total",
    "Connections closed because the request line and headers did not arrive within "
    "AETHER_HEADER_TIMEOUT_SECONDS.",
)
UNAUTHENTICATED = Counter(
    "aether_unauthenticated_requests_total",
    "Requests refused for want of a valid credential (not audited): missing, invalid (unknown "
    "or revoked key) or signature (an inbound webhook's).",
    ["reason"],
)

LLM_CALLS = Counter(
    "aether_llm_calls_total",
    "LLM calls, by provider, model and status.",
    ("provider", "model", "status"),
)
LLM_TOKENS = Counter(
    "aether_llm_tokens_total",
    "LLM tokens, by provider, model and kind.",
    ("provider", "model", "kind"),
)
LLM_LATENCY = Histogram(
    "aether_llm_request_duration_seconds",
    "Time of a whole LLM call, by provider and model.",
    ("provider", "model"),
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120),
)
BREAKER_STATE = Gauge(
    "aether_provider_breaker_state",
    "Circuit breaker per provider: 0 closed, 1 half-open, 2 open.",
    ("provider",),
)

CONTENT_TYPE = CONTENT_TYPE_LATEST


def observe_request(operation_id: str, method: str, status: int, seconds: float) -> None:
    labels = (operation_id, method, str(status))
    HTTP_REQUESTS.labels(*labels).inc()
    HTTP_DURATION.labels(*labels).observe(seconds)


def render() -> bytes:
    return _generate_latest(REGISTRY)


AUDIT_HEAD = Info(
    "aether_audit_head",
    "The newest audit entry this process wrote or verified (id and chain hash): record it "
    "elsewhere to anchor the audit chain against truncation.",
)


def publish_audit_head(entry_id: int, chain_hash: str) -> None:
    AUDIT_HEAD.info({"id": str(entry_id), "hash": chain_hash})
