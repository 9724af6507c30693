"""Every setting is documented in the README with its default, and parsed from the env."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest

from hub.settings import Settings, redact_url

README = Path(__file__).resolve().parent.parent / "README.md"


def documented() -> dict[str, str]:
    rows = re.findall(r"^\| `AETHER_([A-Z_]+)` \| ([^|]+) \|", README.read_text(), re.M)
    return {name.lower(): default.strip() for name, default in rows}


def test_every_setting_is_in_the_readme_and_nothing_else():
    fields = {f.name for f in dataclasses.fields(Settings)}
    assert set(documented()) == fields


def test_the_readme_gives_the_real_defaults():
    defaults = Settings()
    for name, text in documented().items():
        value = getattr(defaults, name)
        if value in ("", ()):
            assert text.startswith("*(empty"), name
        elif isinstance(value, bool):
            assert text == f"`{str(value).lower()}`", name
        else:
            assert text == f"`{value}`", name


def test_settings_come_from_the_environment():
    settings = Settings.from_env(
        {
            "AETHER_PORT": "9000",
            "AETHER_METRICS_PUBLIC": "false",
            "AETHER_CORS_ORIGINS": "https://a.example, https://b.example",
            "AETHER_HEARTBEAT_SECONDS": "2.5",
            "AETHER_DATABASE_URL": "postgresql://u:pw@db/hub",
            "UNRELATED": "x",
        }
    )
    assert settings.port == 9000
    assert settings.metrics_public is False
    assert settings.cors_origins == ("https://a.example", "https://b.example")
    assert settings.heartbeat_seconds == 2.5
    assert settings.database_backend == "postgresql"


def test_a_bad_value_is_refused():
    with pytest.raises(ValueError):
        Settings.from_env({"AETHER_METRICS_PUBLIC": "maybe"})


def test_redaction_hides_secrets_and_passwords():
    settings = Settings(admin_token="t", secret_key="k", database_url="postgresql://u:pw@h/db")
    redacted = settings.redacted()
    assert redacted["admin_token"] == "***"
    assert redacted["secret_key"] == "***"
    assert redacted["database_url"] == "postgresql://u:***@h/db"
    assert redact_url("sqlite:///x.db") == "sqlite:///x.db"
