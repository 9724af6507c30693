"""asyncio helpers shared by the parts of the hub that run background tasks."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator

log = logging.getLogger("aether.runtime")


async def cancel_and_wait(tasks: list[asyncio.Task], patience: float = 10.0) -> None:
    """Cancel ``tasks`` and wait until they are done, cancelling again every half second (a
    task that swallowed a cancel, as ``asyncio.wait_for`` can on Python 3.11, stops at its
    next await); gives up, with a warning, after ``patience`` seconds."""
    pending = {task for task in tasks if not task.done()}
    deadline = time.monotonic() + patience
    while pending:
        for task in pending:
            task.cancel()
        _done, pending = await asyncio.wait(pending, timeout=0.5)
        if pending and time.monotonic() > deadline:
            log.warning("background tasks did not stop", extra={"tasks": len(pending)})
            return
    for task in tasks:  # retrieve the outcomes: no "exception was never retrieved"
        if task.done() and not task.cancelled():
            task.exception()


async def until_stopped(events: AsyncIterator, stop: asyncio.Event) -> AsyncIterator:
    """The events, until ``stop`` is set: at once, even while the provider is silent."""
    iterator = aiter(events)
    stopper = asyncio.ensure_future(stop.wait())
    following = None
    try:
        while True:
            following = asyncio.ensure_future(anext(iterator))
            done, _ = await asyncio.wait({following, stopper}, return_when=asyncio.FIRST_COMPLETED)
            if following not in done:
                following.cancel()
                with contextlib.suppress(asyncio.CancelledError, StopAsyncIteration):
                    await following
                return
            try:
                yield following.result()
            except StopAsyncIteration:
                return
    finally:
        stopper.cancel()
        if following is not None and not following.done():  # we were cancelled mid-wait
            following.cancel()
            with contextlib.suppress(BaseException):
                await following
        close = getattr(iterator, "aclose", None)
        if close is not None:
            await close()
