"""``aether``: serve the hub, apply migrations, create API keys."""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys

import peewee
import uvicorn

from db import base
from hub.app import build_runtime, create_app
from hub.http import server
from hub.services import keys
from hub.settings import Settings, redact_url


def _serve(settings: Settings, args: argparse.Namespace) -> int:
    settings = settings.replace(
        host=args.host or settings.host, port=args.port if args.port else settings.port
    )
    app = create_app(settings)
    if app.runtime.bootstrap_secret:
        print(
            "\n  No API key existed, so an admin key was created. It is shown only now:\n\n"
            f"    {app.runtime.bootstrap_secret}\n\n"
            "  Use it as `Authorization: Bearer <key>` (or Swagger UI's Authorize button).\n",
            file=sys.stderr,
            flush=True,
        )
    print(
        f"  Aether Hub on http://{settings.host}:{settings.port}  "
        f"(Swagger UI: http://{settings.host}:{settings.port}/api/v1/ui/)",
        file=sys.stderr,
        flush=True,
    )
    uvicorn.run(
        app,
        host=settings.host,
        port=settings.port,
        log_level="warning",
        access_log=False,
        lifespan="on",
        proxy_headers=False,
        http=server.protocol(settings.header_timeout_seconds),
        # a WebSocket frame may be as large as a request body, with room for its JSON frame
        ws_max_size=settings.body_limit + 64 * 1024,
    )
    return 0


def _worker(settings: Settings, args: argparse.Namespace) -> int:
    """Run task workers without serving HTTP, until SIGTERM or SIGINT."""
    count = args.count if args.count else max(settings.workers, 1)
    runtime = build_runtime(settings.replace(workers=count))

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        await runtime.start()
        print(
            f"  Aether worker {runtime.instance_id}: {count} workers", file=sys.stderr, flush=True
        )
        try:
            await stop.wait()
        finally:
            await runtime.stop()

    asyncio.run(main())
    return 0


def _migrate(settings: Settings, _args: argparse.Namespace) -> int:
    base.open_database(settings.effective_database_url)
    applied = base.migrate()
    for name, _ in base.migration_status():
        print(f"{'applied now' if name in applied else 'applied'}: {name}")
    return 0


def _create_key(settings: Settings, args: argparse.Namespace) -> int:
    base.open_database(settings.effective_database_url)
    base.migrate()
    key, secret = keys.create(args.name, args.role, created_by="cli")
    print(f"id: {key.id}\nrole: {key.role}\nsecret (shown once): {secret}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="aether", description="Aether Hub")
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="serve the hub")
    serve.add_argument("--host", help="interface to bind (default: AETHER_HOST)")
    serve.add_argument("--port", type=int, help="port to bind (default: AETHER_PORT)")
    serve.set_defaults(run=_serve)
    worker = commands.add_parser("worker", help="run task workers only (no HTTP)")
    worker.add_argument("--count", type=int, help="how many workers (default: AETHER_WORKERS)")
    worker.set_defaults(run=_worker)
    commands.add_parser("migrate", help="apply pending migrations").set_defaults(run=_migrate)
    create_key = commands.add_parser("create-key", help="create an API key and print it once")
    create_key.add_argument("name")
    create_key.add_argument("--role", choices=("viewer", "operator", "admin"), default="admin")
    create_key.set_defaults(run=_create_key)
    args = parser.parse_args(argv)
    settings = Settings.from_env()
    try:
        return args.run(settings, args)
    except (peewee.DatabaseError, peewee.InterfaceError, OSError) as exc:
        if not _storage_failure(exc):
            raise
        print(f"aether: {_storage_problem(settings, exc)}", file=sys.stderr, flush=True)
        return EXIT_STORAGE


EXIT_STORAGE = 3  # the database or the data folder cannot be used


def _storage_failure(exc: BaseException) -> bool:
    """Whether ``exc`` says the data folder or database cannot be used (not a bug)."""
    if isinstance(exc, peewee.OperationalError) or type(exc) in (
        peewee.DatabaseError,  # SQLite: "file is not a database", corruption
        peewee.InterfaceError,
    ):
        return True
    return isinstance(exc, OSError) and exc.errno is not None


def _storage_problem(settings: Settings, exc: BaseException) -> str:
    """One line a person can act on, for a data folder or database that cannot be used."""
    reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    if settings.database_backend == "sqlite":
        where = settings.effective_database_url.removeprefix("sqlite:///")
        hint = {
            "readonly": "the database file or its folder is read-only",
            "unable to open": "the data folder cannot be written or does not exist",
            "not a database": "the file is not an SQLite database (corrupt, or another file)",
            "malformed": "the database file is corrupt",
            "permission denied": "no permission to use the data folder",
        }
        said = next((h for k, h in hint.items() if k in reason.lower()), reason)
        return (
            f"cannot use the SQLite database {where} (AETHER_DATA_DIR={settings.data_dir}): "
            f"{said} [{reason}]"
        )
    return f"cannot use the database at {redact_url(settings.database_url)}: {reason}"


if __name__ == "__main__":
    sys.exit(main())
