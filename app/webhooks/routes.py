"""Webhooks of a source or collection over HTTP: hooks, their secret, pings, the delivery log
and redeliveries, under `{repo}/webhooks/` (owners and admins only)."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

import orjson
from flask import request
from flask.views import MethodView

from ..api.common import current_caller, list_response, owner_routes, resolve_source
from ..api.docs import errors
from ..api.parsing import Blueprint
from ..api.schemas import ListArgsSchema
from ..model import Source, records
from .schemas import (
    DeliveryOut,
    SecretInSchema,
    WebhookCreatedOut,
    WebhookInSchema,
    WebhookOut,
    WebhookPatchSchema,
)
from .service import WebhookService, webhook_service

blp = Blueprint("webhooks", __name__, description=(
    "Webhooks: a source's or collection's owners register URLs that are sent its events "
    "(release.created, export.ready, version.unreleased, repository.deleted; ping to test), "
    "signed with the hook's secret and retried with backoff (docs/api.md, Webhooks)."))

HOOKS = "sources/<source_id>/webhooks/"
HOOK = HOOKS + "<hook_id>/"


def shown(hook: records.Webhook, secret: str | None = None) -> dict[str, Any]:
    """A hook as the API shows it (its schema picks the fields): its secret's last four
    characters, the secret itself only when it was just set."""
    rendered = dict(asdict(hook), secret_hint=f"…{hook.secret[-4:]}")
    rendered.pop("secret")
    if secret is not None:
        rendered["secret"] = secret
    return rendered


def shown_delivery(delivery: records.WebhookDelivery) -> dict[str, Any]:
    """A delivery as the API shows it (its schema picks the fields), its body as JSON."""
    return dict(asdict(delivery), body=orjson.loads(delivery.body))


def _target(owner_kind: str | None, owner_id: str | None,
            source_id: str) -> tuple[WebhookService, Source]:
    _, repo = resolve_source(owner_kind, owner_id, source_id)
    return webhook_service(), repo


@owner_routes(blp, HOOKS, "webhooks")
class Webhooks(MethodView):
    @blp.response(200, WebhookOut(many=True))
    @errors(blp, 401, 403, 404)
    def get(self, owner_id: str | None = None, source_id: str = "",
            owner_kind: str | None = None) -> Any:
        """The repository's hooks (owners and admins)."""
        service, repo = _target(owner_kind, owner_id, source_id)
        return [shown(hook) for hook in service.of_repository(current_caller(), repo)]

    @blp.arguments(WebhookInSchema)
    @blp.response(201, WebhookCreatedOut)
    @errors(blp, 400, 401, 403, 404, 422)
    def post(self, payload: dict[str, Any], owner_id: str | None = None, source_id: str = "",
             owner_kind: str | None = None) -> Any:
        """Register a hook. The answer holds its secret, which is never shown again."""
        service, repo = _target(owner_kind, owner_id, source_id)
        hook, secret = service.create(current_caller(), repo, payload, request.host_url)
        return shown(hook, secret)


@owner_routes(blp, HOOK, "webhook")
class Webhook(MethodView):
    @blp.response(200, WebhookOut)
    @errors(blp, 401, 403, 404)
    def get(self, hook_id: str, owner_id: str | None = None, source_id: str = "",
            owner_kind: str | None = None) -> Any:
        """One hook."""
        service, repo = _target(owner_kind, owner_id, source_id)
        return shown(service.get(current_caller(), repo, hook_id))

    @blp.arguments(WebhookPatchSchema)
    @blp.response(200, WebhookOut)
    @errors(blp, 400, 401, 403, 404, 422)
    def patch(self, payload: dict[str, Any], hook_id: str, owner_id: str | None = None,
              source_id: str = "", owner_kind: str | None = None) -> Any:
        """Change a hook; `active: true` switches it back on after failures."""
        service, repo = _target(owner_kind, owner_id, source_id)
        return shown(service.update(current_caller(), repo, hook_id, payload))

    @blp.response(204)
    @errors(blp, 401, 403, 404)
    def delete(self, hook_id: str, owner_id: str | None = None, source_id: str = "",
               owner_kind: str | None = None) -> None:
        """Remove a hook and its delivery log."""
        service, repo = _target(owner_kind, owner_id, source_id)
        service.delete(current_caller(), repo, hook_id)


@owner_routes(blp, HOOK + "secret/", "webhook_secret")
class WebhookSecret(MethodView):
    @blp.arguments(SecretInSchema)
    @blp.response(200, WebhookCreatedOut)
    @errors(blp, 400, 401, 403, 404, 422)
    def post(self, payload: dict[str, Any], hook_id: str, owner_id: str | None = None,
             source_id: str = "", owner_kind: str | None = None) -> Any:
        """Give a hook a new secret (the server makes one unless given); shown this once."""
        service, repo = _target(owner_kind, owner_id, source_id)
        hook, secret = service.rotate_secret(current_caller(), repo, hook_id, payload["secret"])
        return shown(hook, secret)


@owner_routes(blp, HOOK + "ping/", "webhook_ping")
class WebhookPing(MethodView):
    @blp.response(202, DeliveryOut)
    @errors(blp, 401, 403, 404)
    def post(self, hook_id: str, owner_id: str | None = None, source_id: str = "",
             owner_kind: str | None = None) -> Any:
        """Queue a `ping` delivery (also to a hook switched off); follow it in the log."""
        service, repo = _target(owner_kind, owner_id, source_id)
        return shown_delivery(service.ping(current_caller(), repo, hook_id))


@owner_routes(blp, HOOK + "deliveries/", "webhook_deliveries")
class Deliveries(MethodView):
    @blp.arguments(ListArgsSchema, location="query", error_status_code=400)
    @blp.response(200, DeliveryOut(many=True))
    @errors(blp, 400, 401, 403, 404)
    def get(self, args: dict[str, Any], hook_id: str, owner_id: str | None = None,
            source_id: str = "", owner_kind: str | None = None) -> Any:
        """The hook's delivery log, newest first (its last 100 deliveries), paged."""
        service, repo = _target(owner_kind, owner_id, source_id)
        caller = current_caller()
        return list_response(
            args, lambda skip, limit: service.deliveries(caller, repo, hook_id, skip, limit),
            lambda delivery: DeliveryOut().dump(shown_delivery(delivery)))


@owner_routes(blp, HOOK + "deliveries/<delivery_id>/", "webhook_delivery")
class Delivery(MethodView):
    @blp.response(200, DeliveryOut)
    @errors(blp, 401, 403, 404)
    def get(self, hook_id: str, delivery_id: str, owner_id: str | None = None,
            source_id: str = "", owner_kind: str | None = None) -> Any:
        """One delivery, with its last attempts."""
        service, repo = _target(owner_kind, owner_id, source_id)
        return shown_delivery(service.delivery(current_caller(), repo, hook_id, delivery_id))


@owner_routes(blp, HOOK + "deliveries/<delivery_id>/redeliver/", "webhook_redeliver")
class Redeliver(MethodView):
    @blp.response(202, DeliveryOut)
    @errors(blp, 401, 403, 404)
    def post(self, hook_id: str, delivery_id: str, owner_id: str | None = None,
             source_id: str = "", owner_kind: str | None = None) -> Any:
        """Send a delivery's body again, as a new delivery."""
        service, repo = _target(owner_kind, owner_id, source_id)
        return shown_delivery(service.redeliver(current_caller(), repo, hook_id, delivery_id))
