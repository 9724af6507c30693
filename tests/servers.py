"""Real local servers for tests: an ASGI app on a loopback port, a port that refuses, and
``aether serve`` / ``aether worker`` processes (with the environment they run in)."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator

import httpx
import uvicorn

TOKEN = "test-hub-admin-token-0123456789abcdef"  # AETHER_ADMIN_TOKEN of the hub processes
HEADERS = {"Authorization": f"Bearer {TOKEN}"}


@contextlib.contextmanager
def serve(app, **config) -> Iterator[int]:
    """Serve ``app`` with uvicorn in a thread on 127.0.0.1 (``config``: more
    ``uvicorn.Config`` arguments); yields the port."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(app, log_level="critical", lifespan="off", access_log=False, **config)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline, "the test server did not start"
        time.sleep(0.01)
    try:
        yield port
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


@contextlib.contextmanager
def refusing_port() -> Iterator[int]:
    """A port bound but not listening: connections to it are refused."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    try:
        yield sock.getsockname()[1]
    finally:
        sock.close()


# --- hub processes -------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until(predicate, what: str, attempts: int = 200) -> None:
    """Poll (bounded) until ``predicate()`` is true."""
    for _ in range(attempts):
        try:
            if predicate():
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"gave up waiting for {what}")


def hub_env(database_url: str, data_dir, **extra) -> dict:
    """The environment of a hub process: this one's, without its ``AETHER_*``, plus these."""
    return {
        **{k: v for k, v in os.environ.items() if not k.startswith("AETHER_")},
        "AETHER_DATABASE_URL": database_url,
        "AETHER_ADMIN_TOKEN": TOKEN,
        "AETHER_HEARTBEAT_SECONDS": "0.5",
        "AETHER_LOG_LEVEL": "warning",
        "AETHER_DATA_DIR": str(data_dir),
        "AETHER_RATE_LIMIT_PER_MINUTE": "0",
        "AETHER_UNAUTHENTICATED_RATE_LIMIT_PER_MINUTE": "0",
        **extra,
    }


class Processes:
    """The ``aether serve`` / ``aether worker`` processes of one test; ``stop_all`` ends them."""

    def __init__(self) -> None:
        self.running: list[subprocess.Popen] = []

    def serve(self, env: dict) -> str:
        port = free_port()
        self._start([sys.executable, "-m", "hub.cli", "serve", "--port", str(port)], env)
        url = f"http://127.0.0.1:{port}"
        wait_until(lambda: httpx.get(f"{url}/health/ready").status_code == 200, url)
        return url

    def worker(self, env: dict) -> subprocess.Popen:
        return self._start([sys.executable, "-m", "hub.cli", "worker"], env)

    def _start(self, argv: list[str], env: dict) -> subprocess.Popen:
        process = subprocess.Popen(
            argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        self.running.append(process)
        return process

    def stop(self, process: subprocess.Popen) -> None:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def stop_all(self) -> None:
        for process in self.running:
            self.stop(process)
