"""Webhooks: owners of a source or collection register URLs that are sent its events, signed,
from the job queue, with retries and backoff; SSRF rules on every target.

`service.py` holds the hooks, the events and the delivery job; `targets.py` the SSRF rules and
the sending of one attempt; `routes.py` + `schemas.py` the HTTP layer; `cli.py` the `termsync
webhooks` commands. The console's page of a repository's hooks is app/console/webhooks.py.
"""

from __future__ import annotations

from typing import Any

from flask import Flask

from ..config import settings_of
from ..domain import Domain
from ..jobs import Workers
from ..ops.health import READINESS
from ..store import Store
from .routes import blp
from .service import EXTENSION, JOB_KIND, WebhookService, webhook_service

__all__ = ["WebhookService", "init", "webhook_service"]


def init(app: Flask, api: Any, domain: Domain, workers: Workers, store: Store) -> None:
    """Wire webhooks into the app: service, job handler, content and export listeners, routes."""
    from ..exports import export_service
    service = WebhookService(domain, workers.queue, store, settings_of(app).webhooks,
                             public_url=str(app.config.get("PUBLIC_URL") or ""), wake=workers.wake)
    exports = export_service(app)
    service.export_status = exports.status
    exports.ready_listeners.append(service.on_export_ready)
    domain.content.listeners.append(service.on_content_event)
    app.extensions[EXTENSION] = service
    workers.register(JOB_KIND, service.deliver)
    api.register_blueprint(blp)
    app.extensions[READINESS].details["webhooks"] = service.readiness


