"""Inbound webhooks from an integration's source (public: the signature is the credential).

The handler takes no ``body`` argument on purpose: the HMAC is over the exact bytes the
source sent. Connexion's request validator parses the JSON and replays the original
messages untouched, so ``await request.body()`` reads the raw bytes. Had the handler a
``body`` parameter, Connexion would consume the replayed stream first, through another
request object, and this read would wait on the spent channel for good (tried: it hangs).
"""

from __future__ import annotations

from connexion import request
from starlette.concurrency import run_in_threadpool

from hub.services import webhooks


async def receive_webhook(slug):
    """Receive a webhook from an integration's source."""
    raw = await request.body()
    answer, new = await run_in_threadpool(webhooks.receive, slug, request.headers, raw)
    return answer, 202 if new else 200
