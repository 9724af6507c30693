"""Throwaway PostgreSQL server for the tests and the bench (stdlib only).

Usage::

    with PgServer() as pg:
        url = pg.url  # postgresql://USER@127.0.0.1:PORT/aether_test

initdb/postgres refuse to run as root, so under root the server is run as the ``postgres``
system user (or ``nobody``) via subprocess's ``user=``/``group=`` (setuid in the child).
"""

from __future__ import annotations

import atexit
import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from typing import Any

_STARTUP_TIMEOUT = 30.0


def find_pg_bindir() -> str | None:
    """Return the newest PostgreSQL bin dir holding ``initdb`` and ``pg_ctl``, or None."""

    def ok(d: str) -> bool:
        return all(os.access(os.path.join(d, x), os.X_OK) for x in ("initdb", "pg_ctl"))

    if env := os.environ.get("AETHER_PG_BINDIR"):
        return env if ok(env) else None

    def version(d: str) -> tuple[int, ...]:
        name = os.path.basename(os.path.dirname(d))
        return tuple(int(p) for p in name.split(".") if p.isdigit())

    for d in sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=version, reverse=True):
        if ok(d):
            return d
    which = shutil.which("pg_ctl")
    return os.path.dirname(which) if which and ok(os.path.dirname(which)) else None


def ram_tmpdir(min_free: int = 2 << 30) -> str | None:
    """A RAM-backed (tmpfs) temp dir with ``min_free`` bytes to spare, or None.

    Throwaway clusters and test files gain much from it: on a virtual disk, CREATE/DROP
    DATABASE costs hundreds of milliseconds; in RAM, a few dozen.
    """
    path = "/dev/shm"
    try:
        st = os.statvfs(path)
    except OSError:
        return None
    ok = os.access(path, os.W_OK | os.X_OK) and st.f_bavail * st.f_frsize >= min_free
    return path if ok else None


def _postmaster_alive(data_dir: str) -> bool:
    try:
        with open(os.path.join(data_dir, "postmaster.pid")) as f:
            pid = int(f.readline())
    except (FileNotFoundError, ValueError):
        return False
    except OSError:
        return True  # not ours to judge (another user's cluster)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    return True


def remove_stale_clusters(base_dir: str, min_age: float = 600.0) -> None:
    """Remove the clusters of killed runs from ``base_dir`` (in RAM they would hold memory
    until the next boot): those with no live postmaster, untouched for ``min_age`` seconds
    (a cluster being set up has no postmaster yet)."""
    for path in glob.glob(os.path.join(base_dir, "aether-pg-*")):
        try:
            recent = time.time() - os.stat(path).st_mtime < min_age
        except OSError:
            continue
        if not recent and not _postmaster_alive(os.path.join(path, "data")):
            shutil.rmtree(path, ignore_errors=True)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PgServer:
    """A private PostgreSQL cluster in a temp dir, listening on 127.0.0.1:<free port>."""

    def __init__(
        self, dbname: str = "aether_test", bindir: str | None = None, base_dir: str | None = None
    ) -> None:
        found = bindir or find_pg_bindir()
        if not found:
            raise RuntimeError("PostgreSQL binaries not found (set AETHER_PG_BINDIR)")
        self.bindir: str = found
        self.dbname = dbname
        self.base_dir = base_dir  # where the cluster's temp dir goes (None: the default)
        self.host = "127.0.0.1"
        self.port = 0
        self.tmpdir: str | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._cmd: list[str] = []
        self._as: dict[str, Any] = {}  # subprocess kwargs to drop root privileges
        if os.geteuid() == 0:
            try:
                pw = pwd.getpwnam("postgres")
            except KeyError:
                pw = pwd.getpwnam("nobody")
            self.user = pw.pw_name
            self._as = {"user": pw.pw_uid, "group": pw.pw_gid, "extra_groups": []}
        else:
            self.user = pwd.getpwuid(os.geteuid()).pw_name
        self._env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        self._env.update(LC_ALL="C", LANG="C")

    @property
    def url(self) -> str:
        return self.url_for(self.dbname)

    def url_for(self, dbname: str) -> str:
        return f"postgresql://{self.user}@{self.host}:{self.port}/{dbname}"

    def _run(self, tool: str, *args: str, as_owner: bool = False) -> None:
        cmd = [os.path.join(self.bindir, tool), *args]
        kw = self._as if as_owner else {}
        res = subprocess.run(cmd, env=self._env, cwd=self.tmpdir, capture_output=True, **kw)
        if res.returncode != 0:
            out = (res.stdout + res.stderr).decode(errors="replace")
            raise RuntimeError(f"{tool} failed ({res.returncode}): {out}")

    def _ready(self) -> bool:
        isready = os.path.join(self.bindir, "pg_isready")
        if os.path.exists(isready):
            cmd = [isready, "-q", "-h", self.host, "-p", str(self.port), "-d", "postgres"]
            return subprocess.run([*cmd, "-U", self.user], env=self._env).returncode == 0
        try:
            socket.create_connection((self.host, self.port), timeout=1).close()
            return True
        except OSError:
            return False

    def start(self) -> PgServer:
        """initdb, start postgres, wait until ready and create ``self.dbname``."""
        if self._proc is not None:
            return self
        atexit.register(self.stop)
        try:
            self._start()
        except BaseException:
            self.stop()
            raise
        return self

    def _start(self) -> None:
        self.tmpdir = tmp = tempfile.mkdtemp(prefix="aether-pg-", dir=self.base_dir)
        os.chmod(tmp, 0o755)
        if self._as:
            os.chown(tmp, self._as["user"], self._as["group"])
        data = os.path.join(tmp, "data")
        flags = ["-A", "trust", "-E", "UTF8", "--locale=C", "-N"]
        self._run("initdb", "-D", data, "-U", self.user, *flags, as_owner=True)
        settings = "fsync=off synchronous_commit=off full_page_writes=off max_connections=200"
        ready = False
        for _ in range(3):  # retry if another process grabbed the "free" port meanwhile
            self.port = _free_port()
            cmd = [os.path.join(self.bindir, "postgres"), "-D", data, "-h", self.host, "-k", tmp]
            cmd += ["-p", str(self.port), *(f"-c{kv}" for kv in settings.split())]
            self._cmd = cmd
            proc, ready = self._launch()
            if ready or proc.poll() is None:  # up, or hung: retrying won't help
                break
        if not ready:
            self._failed_to_start()
        self.create_database(self.dbname)

    def _launch(self) -> tuple[subprocess.Popen[bytes], bool]:
        assert self.tmpdir is not None
        with open(os.path.join(self.tmpdir, "postgres.log"), "ab") as log:
            self._proc = proc = subprocess.Popen(
                self._cmd,
                env=self._env,
                cwd=self.tmpdir,
                stdout=log,
                stderr=subprocess.STDOUT,
                **self._as,
            )
        deadline = time.monotonic() + _STARTUP_TIMEOUT
        while not (ready := self._ready()) and proc.poll() is None:
            if time.monotonic() > deadline:
                break
            time.sleep(0.1)
        return proc, ready

    def _failed_to_start(self) -> None:
        assert self.tmpdir is not None
        with open(os.path.join(self.tmpdir, "postgres.log"), errors="replace") as f:
            raise RuntimeError(f"postgres did not start:\n{f.read()[-2000:]}")

    def pause(self) -> None:
        """Stop the server as an operator would (``pg_ctl stop``, fast mode: clients are
        disconnected), keeping its data and port for :meth:`resume`."""
        assert self._proc is not None and self.tmpdir is not None
        data = os.path.join(self.tmpdir, "data")
        self._run("pg_ctl", "stop", "-D", data, "-m", "fast", "-w", as_owner=True)
        self._proc.wait(timeout=30)

    def resume(self) -> None:
        """Start the paused server again on the same port and data."""
        _, ready = self._launch()
        if not ready:
            self._failed_to_start()

    def create_database(self, name: str) -> str:
        """Create database ``name`` and return its URL."""
        self._run("createdb", "-h", self.host, "-p", str(self.port), "-U", self.user, name)
        return self.url_for(name)

    def drop_database(self, name: str) -> None:
        """Drop database ``name`` (terminating its connections on PG >= 13)."""
        args = ["-h", self.host, "-p", str(self.port), "-U", self.user, "--if-exists", name]
        try:
            self._run("dropdb", "--force", *args)
        except RuntimeError:
            self._run("dropdb", *args)

    def stop(self) -> None:
        """Stop the server (immediate mode) and remove the temp dir; safe to call twice."""
        atexit.unregister(self.stop)
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None and self.tmpdir:
            data = os.path.join(self.tmpdir, "data")
            try:
                self._run("pg_ctl", "stop", "-D", data, "-m", "immediate", "-w", as_owner=True)
                proc.wait(timeout=10)
            except (RuntimeError, subprocess.TimeoutExpired):
                proc.kill()
                proc.wait()
        if self.tmpdir:
            shutil.rmtree(self.tmpdir, ignore_errors=True)
            self.tmpdir = None

    def __enter__(self) -> PgServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
