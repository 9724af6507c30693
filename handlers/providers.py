"""The LLM providers this hub calls, their keys (write-only) and breakers."""

from __future__ import annotations

from starlette.concurrency import run_in_threadpool

from generated.models import ProviderPut
from handlers import body_fields
from hub.http import context
from hub.services import providers


def list_providers(limit=50, cursor=None):
    """Configured LLM providers, their models and circuit breakers (never a key)."""
    return providers.page(limit=limit, cursor=cursor), 200


def get_provider(provider_id):
    """One provider, its models and circuit breaker (never its key)."""
    view = providers.view(provider_id)
    return view, 200, {"ETag": providers.etag(view)}


def put_provider(provider_id, body):
    """Create or replace a provider; its API key is write-only and encrypted at rest."""
    fields = body_fields(ProviderPut, body)
    view, created = providers.put(provider_id, fields, if_match=context.header("If-Match"))
    headers = {"ETag": providers.etag(view)}
    if created:
        headers["Location"] = f"/api/v1/providers/{provider_id}"
    return view, 201 if created else 200, headers


def delete_provider(provider_id):
    """Remove a provider configured through the API."""
    providers.delete(provider_id)
    return None, 204


async def test_provider(provider_id, model=None):
    """One tiny call to the provider, with its result and latency."""
    return await providers.test(provider_id, model), 200


async def reset_provider(provider_id):
    """Close the provider's circuit breaker."""
    return await run_in_threadpool(providers.reset, provider_id), 200
