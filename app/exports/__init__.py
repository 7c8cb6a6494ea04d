"""Exports: build, cache, serve and invalidate zipped OCL exports of source versions."""

from __future__ import annotations

import logging
from typing import Any

from flask import Flask, current_app

from ..domain import Domain
from ..jobs import Workers
from .service import JOB_KIND, ExportService
from .storage import make_storage

logger = logging.getLogger(__name__)

EXTENSION = "termsync.exports"
GC_TASK = "exports-gc"


def init(app: Flask, api: Any, domain: Domain, workers: Workers) -> None:
    """Wire exports into the app: service, job handler, content listener, HTTP routes, GC."""
    storage = make_storage(app.config, domain.store)
    service = ExportService(domain, workers.queue, storage, app.config, wake=workers.wake)
    app.extensions[EXTENSION] = service
    workers.register(JOB_KIND, service.build)
    domain.content.listeners.append(service.on_content_event)

    from ..api.exports import blp
    api.register_blueprint(blp)
    # GET never builds: released versions missing a current export (an upgrade changed the
    # format, a file was lost, a build failed long ago) are queued now.
    service.ensure_released_exports()

    # Run once per interval across every worker process (under a lease in the database).
    if float(app.config["EXPORT_GC_INTERVAL"]) > 0:
        from ..ops import add_maintenance_task
        add_maintenance_task(app, GC_TASK, app.config["EXPORT_GC_INTERVAL"],
                             lambda: collect_garbage(app))


def export_service(app: Flask | None = None) -> ExportService:
    """The export service of an app (the current one by default)."""
    return (app or current_app).extensions[EXTENSION]


def collect_garbage(app: Flask) -> None:
    """The scheduled GC task: a thin wrapper that gives `ExportService.purge` an app context."""
    with app.app_context():
        try:
            export_service(app).purge()
        except Exception:  # the scheduler keeps running; the next run tries again
            logger.exception("export garbage collection failed")
