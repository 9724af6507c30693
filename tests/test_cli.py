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


# --- an unusable data folder is one clear line (issue 13) --------------------------------


def _run(tmp_path, data_dir, *args):
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if not k.startswith("AETHER_")}
    env["AETHER_DATA_DIR"] = str(data_dir)
    return subprocess.run(
        [sys.executable, "-m", "hub.cli", *args], env=env, capture_output=True, text=True
    )


def test_a_corrupt_database_is_one_line_and_exit_3(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    (data / "aether.db").write_bytes(b"this is not an SQLite database, just bytes" * 100)

    done = _run(tmp_path, data, "migrate")

    assert done.returncode == cli.EXIT_STORAGE
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("aether: cannot use the SQLite database ")
    assert "not an SQLite database" in lines[0]


def test_a_data_folder_that_is_a_file_is_one_line(tmp_path):
    taken = tmp_path / "data"
    taken.write_text("a file where the folder should be")

    done = _run(tmp_path, taken, "serve", "--port", "1")

    assert done.returncode == cli.EXIT_STORAGE
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert done.stderr.startswith("aether: cannot use the SQLite database ")


def test_connexion_s_default_media_type_notice_stays_out_of_the_log(caplog):
    """Operations taking JSON or YAML (or a SKILL.md or an upload) made Connexion log a
    warning at every start, in plain text outside the hub's JSON lines, about a default it
    picks; the hub's log set-up drops that one message (and nothing else of Connexion's)."""
    import logging

    from hub.core import logs

    logs.configure("info")
    connexion = logging.getLogger("connexion.operations.openapi3")
    with caplog.at_level(logging.WARNING):
        connexion.warning("this operation accepts multiple content types, using %s", "a/b")
        connexion.warning("something else")
    assert [r.getMessage() for r in caplog.records] == ["something else"]
