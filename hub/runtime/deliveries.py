"""Subscription deliveries: POST each pending delivery, retry with backoff, dead-letter.

Every hub process runs :func:`run_forever` beside the API (never inside the request that
caused the event). It claims due deliveries with a lease, as workers claim tasks (see
``hub.services.subscriptions``), keeps up to :data:`CONCURRENCY` of them in flight, and
sleeps until :func:`wake` is called or ``AETHER_EVENT_POLL_SECONDS`` pass.

An attempt POSTs the event, exactly as ``GET /api/v1/events/{id}`` shows it, through
``hub.core.outbound`` (the ``http_request`` tool's private-address policy and
``AETHER_OUTBOUND_ALLOWLIST``, checked again on every attempt; redirects are not followed),
bounded by ``AETHER_DELIVERY_TIMEOUT_SECONDS``, with these headers:

- ``X-Aether-Event``: the event type;
- ``X-Aether-Delivery``: the delivery id, the same on every retry (for the receiver's
  idempotency);
- ``X-Aether-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>``
  (:func:`sign`; receivers check it with :func:`verify` or its equivalent).

A 2xx answer delivers. Anything else (another status, a timeout, a connection error, an
address the policy refuses) is a failed attempt, retried after
``min(backoff * 2 ** (attempt - 1), backoff_max)``; after ``AETHER_DELIVERY_MAX_ATTEMPTS``
the delivery fails for good and becomes a dead letter (kind ``delivery``). A delivery whose
event was trimmed by retention fails for good at once. Stopping hands the deliveries in
flight back to the queue (the attempt does not count); a receiver may then see one delivery
id twice, which is what ``X-Aether-Delivery`` is for.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import logging
import threading
import time

import peewee

from db.subscriptions import Delivery
from hub.core import outbound, signals
from hub.core.crypto import CryptoError
from hub.services import subscriptions

log = logging.getLogger("aether.deliveries")

CONCURRENCY = 4  # deliveries in flight per process
LEASE_MARGIN_SECONDS = 30.0  # the lease outlives the attempt's timeout by this much
RESPONSE_BYTES = 4096  # of the receiver's answer read (only a failure shows some of it)
SIGNATURE_TOLERANCE = 300  # seconds verify() accepts between the signature and now


# --- signatures --------------------------------------------------------------------------


def _as_bytes(value: bytes | str) -> bytes:
    return value.encode("utf-8") if isinstance(value, str) else value


def sign(secret: str, timestamp: int, body: bytes | str) -> str:
    """The ``X-Aether-Signature`` value for ``body`` sent at ``timestamp`` (unix seconds)."""
    message = f"{timestamp}.".encode() + _as_bytes(body)
    digest = hmac.new(secret.encode("utf-8"), message, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


def verify(
    secret: str,
    header: str | None,
    body: bytes | str,
    tolerance: float | None = SIGNATURE_TOLERANCE,
    *,
    now: float | None = None,
) -> bool:
    """Whether ``header`` (an ``X-Aether-Signature`` value) signs ``body`` (the raw bytes
    received) with ``secret``, made at most ``tolerance`` seconds from ``now`` (``None``: any
    age). Compares in constant time; any ``v1`` may match."""
    if not header:
        return False
    timestamp, candidates = None, []
    for part in header.split(","):
        name, _, value = part.strip().partition("=")
        if name == "t" and value.isdigit():
            timestamp = int(value)
        elif name == "v1" and value:
            candidates.append(value)
    if timestamp is None or not candidates:
        return False
    if tolerance is not None and abs((time.time() if now is None else now) - timestamp) > tolerance:
        return False
    expected = sign(secret, timestamp, body).rpartition("v1=")[2]
    return any(hmac.compare_digest(expected, candidate) for candidate in candidates)


# --- one attempt -------------------------------------------------------------------------


def lease_seconds(settings) -> float:
    return settings.delivery_timeout_seconds + LEASE_MARGIN_SECONDS


def _claim(owner: str, settings) -> Delivery | None:
    try:
        return subscriptions.claim(owner, lease_seconds(settings))
    except peewee.PeeweeException:
        log.warning("claiming a delivery failed", exc_info=True)
        return None


def _failure(response: outbound.OutboundResponse) -> str:
    text = " ".join(response.text().split())[:200]
    return f"the receiver answered HTTP {response.status}" + (f": {text}" if text else "")


async def _post(target: subscriptions.Target, delivery: Delivery, settings):
    """POST once: ``(status_code, error)``, error ``None`` for a 2xx."""
    headers = {
        "Content-Type": "application/json",
        "X-Aether-Event": target.event_type,
        "X-Aether-Delivery": delivery.id,
        "X-Aether-Signature": sign(target.secret, int(time.time()), target.body),
    }
    try:
        response = await outbound.request(
            "POST",
            target.url,
            headers=headers,
            content=target.body,
            timeout=settings.delivery_timeout_seconds,
            max_bytes=RESPONSE_BYTES,
            max_redirects=0,
            allowlist=outbound.Allowlist.parse(settings.outbound_allowlist),
        )
    except outbound.OutboundRefused as exc:
        if "redirect" in str(exc):
            return None, "the receiver answered with a redirect; deliveries do not follow them"
        return None, str(exc)
    except outbound.OutboundFailed as exc:
        return None, str(exc)
    if 200 <= response.status < 300:
        return response.status, None
    return response.status, _failure(response)


async def attempt(delivery: Delivery, settings) -> str:
    """Make one claimed attempt and record it: ``delivered``, ``retrying``, ``failed`` (for
    good), or ``lost`` (the lease was taken over, or the subscription deleted: nothing
    recorded)."""
    final = False
    status_code = error = None
    try:
        target = await asyncio.to_thread(subscriptions.prepare, delivery)
    except subscriptions.Undeliverable as exc:
        target, error, final = None, str(exc), True
    except CryptoError:
        target = None
        error = "the subscription's secret cannot be decrypted (was AETHER_SECRET_KEY changed?)"
    if target is None and error is None:
        return "lost"
    if target is not None:
        try:
            status_code, error = await _post(target, delivery, settings)
        except Exception as exc:  # a bug here must not stop the deliverer
            log.error("delivery failed", exc_info=exc, extra={"delivery_id": delivery.id})
            status_code, error = None, "the delivery failed unexpectedly in the hub"
    if error is None:
        recorded = await asyncio.to_thread(subscriptions.delivered, delivery, status_code)
        return "delivered" if recorded else "lost"
    recorded = await asyncio.to_thread(
        subscriptions.failed_attempt, delivery, status_code, error, final=final
    )
    if not recorded:
        return "lost"
    last = final or delivery.attempts >= settings.delivery_max_attempts
    return "failed" if last else "retrying"


async def tick(runtime, owner: str | None = None) -> list[str]:
    """Claim up to :data:`CONCURRENCY` due deliveries, attempt them together and return
    their outcomes (empty when nothing was due). For tests and one-off runs."""
    owner = owner or f"{runtime.instance_id}/deliveries"
    claimed = []
    while len(claimed) < CONCURRENCY:
        delivery = await asyncio.to_thread(_claim, owner, runtime.settings)
        if delivery is None:
            break
        claimed.append(delivery)
    return list(await asyncio.gather(*(attempt(d, runtime.settings) for d in claimed)))


# --- the loop ----------------------------------------------------------------------------


class _Waker:
    """Wakes one ``run_forever`` loop from any thread."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.pending = False
        self.waiter: asyncio.Future | None = None

    def wake(self) -> None:
        with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
            self.loop.call_soon_threadsafe(self.set)

    def set(self) -> None:
        self.pending = True
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(None)

    async def sleep(self, seconds: float) -> None:
        if not self.pending:
            self.waiter = self.loop.create_future()
            try:
                # asyncio.wait, not wait_for: on 3.11 wait_for can swallow a cancel.
                await asyncio.wait({self.waiter}, timeout=seconds)
            finally:
                if not self.waiter.done():
                    self.waiter.cancel()
                self.waiter = None
        self.pending = False


_wakers: set[_Waker] = set()
_wakers_lock = threading.Lock()


def wake() -> None:
    """Deliveries were queued or re-queued: look now (thread-safe, callable anywhere)."""
    with _wakers_lock:
        wakers = list(_wakers)
    for waker in wakers:
        waker.wake()


signals.deliveries_due.connect(wake)  # every loop of this process hears the service's signal


async def run_forever(runtime) -> None:
    """Deliver until cancelled; then hand what is in flight back to the queue."""
    loop = asyncio.get_running_loop()
    waker = _Waker(loop)
    with _wakers_lock:
        _wakers.add(waker)
    owner = f"{runtime.instance_id}/deliveries"
    in_flight: dict[asyncio.Task, Delivery] = {}

    def finished(task: asyncio.Task) -> None:
        in_flight.pop(task, None)
        waker.set()  # a free slot: look for more

    interrupted: list[Delivery] = []
    try:
        while True:
            settings = runtime.settings
            while len(in_flight) < CONCURRENCY and not runtime.draining:
                claiming = asyncio.ensure_future(asyncio.to_thread(_claim, owner, settings))
                try:
                    delivery = await asyncio.shield(claiming)
                except asyncio.CancelledError:  # the claim's thread goes on: keep its catch
                    if (late := await claiming) is not None:
                        interrupted.append(late)
                    raise
                if delivery is None:
                    break
                task = loop.create_task(_guarded(delivery, settings))
                in_flight[task] = delivery
                task.add_done_callback(finished)
            await waker.sleep(settings.event_poll_seconds)
    finally:
        with _wakers_lock:
            _wakers.discard(waker)
        held = dict(in_flight)
        for task in held:
            task.cancel()
        await asyncio.gather(*held, return_exceptions=True)
        interrupted += [delivery for task, delivery in held.items() if task.cancelled()]
        if interrupted:
            await asyncio.to_thread(_hand_back, interrupted)


async def _guarded(delivery: Delivery, settings) -> str:
    try:
        return await attempt(delivery, settings)
    except Exception as exc:  # the database went away: the lease lapses, it runs again
        log.warning("a delivery attempt could not be recorded", exc_info=exc)
        return "lost"


def _hand_back(held: list[Delivery]) -> None:
    for delivery in held:
        try:
            subscriptions.hand_back(delivery)
        except peewee.PeeweeException:  # its lease lapses instead
            log.warning("handing a delivery back failed", exc_info=True)
