"""The caller's identity and API keys."""

from __future__ import annotations

from db import api_keys
from db.api_keys import ApiKey
from db.pagination import list_page
from generated.models import ApiKeyCreate
from hub.core.problems import require
from hub.http import context
from hub.services import keys
from hub.settings import current_settings


async def get_me():
    """The calling key's id, name and role."""
    caller = context.principal()
    return {"key_id": caller.key_id, "name": caller.name, "role": caller.role}, 200


def list_api_keys(limit=50, cursor=None, include_revoked=False):
    """List API keys."""
    query = api_keys.listing(include_revoked=include_revoked)
    return list_page(query, ApiKey.id, limit=limit, cursor=cursor), 200


def create_api_key(body):
    """Create an API key; the secret is returned this once."""
    request = ApiKeyCreate.model_validate(body)
    key, secret = keys.create(request.name.root, request.role.value, context.actor_id())
    location = f"/api/v1/api-keys/{key.id}"
    return {**key.to_api(), "secret": secret}, 201, {"Location": location}


def get_api_key(key_id):
    """One API key (never its secret)."""
    key = require(api_keys.get(key_id), "api_key", key_id)
    return key.to_api(), 200


def revoke_api_key(key_id):
    """Revoke an API key, effective at once."""
    keys.revoke(key_id, admin_token_set=bool(current_settings().admin_token))
    return None, 204
