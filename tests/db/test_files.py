"""Files at rest are the owner's only (issue 13, break 4): the data folder 0700, the SQLite
database and the generated secret key 0600, an existing database others could read tightened."""

from __future__ import annotations

import stat

from starlette.testclient import TestClient

from db import base as db_base
from hub.app import create_app
from hub.core import crypto
from hub.services import keys
from hub.settings import Settings


def test_the_database_and_secret_key_are_owner_only(tmp_path):
    folder = tmp_path / "fresh" / "data"
    hub = create_app(Settings(data_dir=str(folder), log_level="warning"))
    try:
        with TestClient(hub, headers={"Authorization": f"Bearer {keys.create('t', 'admin')[1]}"}):
            crypto.box().encrypt("x")  # makes the secret key file
        modes = {
            path.name: stat.S_IMODE(path.stat().st_mode) for path in [folder, *folder.iterdir()]
        }
    finally:
        db_base.database.close()
    assert modes["data"] == 0o700
    assert modes["aether.db"] == 0o600
    assert modes["secret.key"] == 0o600
    assert all(mode & 0o077 == 0 for mode in modes.values()), modes


def test_an_existing_database_others_could_read_is_tightened(tmp_path):
    path = tmp_path / "hub.db"
    path.write_bytes(b"")
    path.chmod(0o644)
    db_base.owner_only(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
