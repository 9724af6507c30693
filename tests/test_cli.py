"""The ``aether`` command: migrate and create-key (serve is exercised by the benchmark)."""

from __future__ import annotations

import re

from hub import cli


def test_migrate_then_create_key(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("AETHER_DATA_DIR", str(tmp_path))
    assert cli.main(["migrate"]) == 0
    assert "0001_initial" in capsys.readouterr().out
    assert cli.main(["create-key", "ops", "--role", "operator"]) == 0
    out = capsys.readouterr().out
    secret = re.search(r"secret \(shown once\): (\S+)", out).group(1)
    assert secret.startswith("aeth_")

    from hub.services.auth import authenticate

    principal = authenticate(secret, admin_token="")
    assert (principal.name, principal.role) == ("ops", "operator")
    assert (tmp_path / "aether.db").exists()
