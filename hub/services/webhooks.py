"""Inbound webhooks: check the signature, deduplicate by delivery id, record the events.

A delivery to ``/api/v1/webhooks/{slug}`` is checked against its integration's webhook
secret the way the integration's source signs (``hub.core.signatures``). In one write
transaction it then becomes a receipt (unique per integration and delivery id), a
``webhook.received`` event carrying the parsed body and the raw text, and, when an event
mapping matches, the canonical event (``issue.created`` …) whose payload is the source's
payload itself, in the same trace. A delivery id seen before is acknowledged again with the
first receipt and nothing new; two identical deliveries racing each other meet at the
unique index, and the loser answers as a duplicate.

The receipt keeps the id of its ``webhook.received`` event, which the event log assigns only
when it writes its batch, just before COMMIT. So the receipt is inserted with
``event_id = 0`` (the insert is also what detects a replay, before any other work) and
``events.when_written`` sets the id in the same transaction: no reader ever sees the
placeholder.
"""

from __future__ import annotations

import json
from collections.abc import Mapping

import peewee

from db import projects
from db.base import utcnow, write_transaction
from db.projects import Integration, WebhookReceipt
from hub.core import signatures as webhook_signatures
from hub.core.problems import NotFound, Unauthorized
from hub.events import log as events
from hub.services import audit, event_mappings, integrations

RECEIVED = "webhook.received"


def _unauthorized(detail: str) -> Unauthorized:
    return Unauthorized(detail, code="invalid_signature")


def authenticate(slug: str, headers: Mapping[str, str], raw: bytes) -> Integration:
    """The integration a delivery is for, once its signature checks out (404, 401 else)."""
    integration = projects.integration_by_slug(slug)
    if integration is None:
        raise NotFound(f"No integration with slug {slug!r}.", code="integration_not_found")
    if not integration.active:
        raise _unauthorized(f"Integration {slug!r} is inactive.")
    secret = integrations.webhook_secret(integration)
    if secret is None:
        raise _unauthorized(f"Integration {slug!r} has no webhook secret to check against.")
    if not webhook_signatures.verify(integration.kind, secret, raw, headers):
        header = webhook_signatures.SIGNATURE_HEADER[integration.kind]
        raise _unauthorized(f"The {header} header is missing or does not match.")
    return integration


def _answer(receipt: WebhookReceipt, *, duplicate: bool) -> dict:
    return {
        "duplicate": duplicate,
        "delivery_id": receipt.delivery_id,
        "event_id": receipt.event_id,
        "type": receipt.type,
    }


def receive(slug: str, headers: Mapping[str, str], raw: bytes) -> tuple[dict, bool]:
    """Record one delivery; returns (receipt answer, whether it was new)."""
    integration = authenticate(slug, headers, raw)
    kind = integration.kind
    text = raw.decode("utf-8")  # the request validator let only UTF-8 JSON through
    payload = json.loads(text)
    name = webhook_signatures.event_name(kind, headers)
    delivery_id = webhook_signatures.delivery_id(kind, headers, raw)
    if projects.receipt(integration.id, delivery_id) is not None:
        return _duplicate(integration, delivery_id), False
    mapping = event_mappings.match(kind, name, payload, delivery_id)
    mapped = mapping.type if mapping else None
    try:
        with write_transaction():
            receipt = WebhookReceipt.create(
                integration_id=integration.id,
                delivery_id=delivery_id,
                event_id=0,
                type=mapped,
                created_at=utcnow(),
            )
            received = events.emit(
                RECEIVED,
                source=kind,
                subject=slug,
                payload={
                    "integration_id": integration.id,
                    "project_id": integration.project_id,
                    "event": name,
                    "action": event_mappings.action_of(kind, payload),
                    "delivery_id": delivery_id,
                    "mapped_type": mapped,
                    "body": payload,
                },
                raw=text,
            )
            if mapped:
                events.emit(
                    mapped, source=kind, subject=slug, payload=payload, trace_id=received.trace_id
                )
            audit.answers(202)  # accepted: a new delivery (a duplicate answers 200)
            events.when_written(
                lambda: (
                    WebhookReceipt.update(event_id=received.id)
                    .where(WebhookReceipt.id == receipt.id)
                    .execute()
                )
            )
    except peewee.IntegrityError:  # the same delivery, committed by a concurrent request
        return _duplicate(integration, delivery_id), False
    receipt.event_id = received.id
    return _answer(receipt, duplicate=False), True


def _duplicate(integration: Integration, delivery_id: str) -> dict:
    return _answer(projects.receipt(integration.id, delivery_id), duplicate=True)
