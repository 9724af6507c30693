"""One frozen settings object, built once from ``AETHER_*`` environment variables.

Every field is documented in the README's settings table; ``tests/test_settings.py``
fails when one is missing there.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _bool(value: str) -> bool:
    lowered = value.strip().lower()
    if lowered in {"1", "true", "yes", "on"}:
        return True
    if lowered in {"0", "false", "no", "off", ""}:
        return False
    raise ValueError(f"not a boolean: {value!r}")


def _list(value: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in value.split(",") if part.strip())


@dataclass(frozen=True)
class Settings:
    """Effective configuration. Field names map to ``AETHER_<NAME>`` variables."""

    data_dir: str = "./data"
    database_url: str = ""
    host: str = "127.0.0.1"
    port: int = 8080
    admin_token: str = field(default="", repr=False)
    secret_key: str = field(default="", repr=False)
    body_limit: int = 1024 * 1024
    header_timeout_seconds: float = 10.0
    upload_limit: int = 10 * 1024 * 1024
    cors_origins: tuple[str, ...] = ()
    log_level: str = "info"
    rate_limit_per_minute: int = 600
    unauthenticated_rate_limit_per_minute: int = 60
    metrics_public: bool = True
    response_validation: bool = False
    heartbeat_seconds: float = 5.0
    instance_name: str = ""
    openai_base_url: str = ""
    openai_api_key: str = field(default="", repr=False)
    openai_models: tuple[str, ...] = ()
    prices: str = ""
    workers: int = 2
    worker_lease_seconds: float = 30.0
    worker_poll_seconds: float = 0.5
    task_backoff_seconds: float = 2.0
    task_backoff_max_seconds: float = 300.0
    approval_ttl_seconds: int = 86400
    outbound_allowlist: tuple[str, ...] = ()
    outbound_max_response_bytes: int = 1024 * 1024
    event_retention_days: float = 30.0
    event_retention_count: int = 1_000_000
    event_stream_buffer: int = 1000
    event_poll_seconds: float = 1.0
    delivery_max_attempts: int = 6
    delivery_backoff_seconds: float = 2.0
    delivery_backoff_max_seconds: float = 600.0
    delivery_timeout_seconds: float = 10.0
    scheduler_poll_seconds: float = 1.0
    program_timeout_ms: int = 200
    program_memory_mb: int = 256
    program_workers: int = 2
    skills_dir: str = ""

    # Keys PATCH /api/v1/config may change while the hub runs.
    RUNTIME_TUNABLE = ("log_level", "rate_limit_per_minute", "metrics_public")
    SECRET_FIELDS = ("admin_token", "secret_key", "openai_api_key")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides) -> Settings:
        """Build settings from ``AETHER_*`` variables; keyword overrides win."""
        environ = os.environ if environ is None else environ
        values: dict = {}
        for f in dataclasses.fields(cls):
            raw = environ.get(f"AETHER_{f.name.upper()}")
            if raw is None:
                continue
            values[f.name] = coerce(f.name, raw)
        values.update(overrides)
        return cls(**values)

    @property
    def effective_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{Path(self.data_dir).resolve() / 'aether.db'}"

    @property
    def database_backend(self) -> str:
        return "postgresql" if self.effective_database_url.startswith("postgres") else "sqlite"

    def redacted(self) -> dict:
        """Every setting, secrets replaced by whether they are set."""
        out = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name in self.SECRET_FIELDS:
                value = "***" if value else ""
            elif f.name == "database_url":
                value = redact_url(value)
            elif isinstance(value, tuple):
                value = list(value)
            out[f.name] = value
        return out

    def replace(self, **changes) -> Settings:
        return dataclasses.replace(self, **changes)


def coerce(name: str, raw: str):
    """Convert a raw string to the type of setting ``name``."""
    current = getattr(Settings, name)
    if isinstance(current, bool):
        return _bool(raw)
    if isinstance(current, int):
        return int(raw)
    if isinstance(current, float):
        return float(raw)
    if isinstance(current, tuple):
        return _list(raw)
    return raw


def redact_url(url: str) -> str:
    """Hide the password in a database URL."""
    if "@" not in url or "://" not in url:
        return url
    scheme, rest = url.split("://", 1)
    creds, host = rest.rsplit("@", 1)
    user = creds.split(":", 1)[0]
    return f"{scheme}://{user}:***@{host}" if ":" in creds else url


# --- the settings in force in this process -------------------------------------------------
# ``create_app`` installs them; the runtime re-installs them when runtime-tunable keys change
# (``PATCH /api/v1/config``, or another instance's change picked up at a heartbeat). Services
# read them here instead of reaching for the runtime.

_current: Settings | None = None


def install(settings: Settings) -> None:
    global _current
    _current = settings


def current_settings() -> Settings:
    if _current is None:
        raise RuntimeError("create_app() has not run in this process")
    return _current
