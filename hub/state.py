"""The runtime of the app this process serves, for handlers that report on it."""

from __future__ import annotations

from hub.runtime import Runtime

_runtime: Runtime | None = None


def set_runtime(runtime: Runtime) -> None:
    global _runtime
    _runtime = runtime


def runtime() -> Runtime:
    if _runtime is None:
        raise RuntimeError("create_app() has not run in this process")
    return _runtime
