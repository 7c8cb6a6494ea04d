"""Exports: build, cache, serve and invalidate zipped OCL exports of source versions.

`service.py` is the state machine, the build job and garbage collection; `builder.py` writes the
zip; `storage.py` keeps the files (a directory or GridFS); `routes.py` and `schemas.py` are the
HTTP layer; `cli.py` the `termsync exports` commands.
"""

from __future__ import annotations

import logging
from typing import Any

from flask import Flask

from ..config import settings_of
from ..domain import Domain
from ..jobs import Workers
from ..ops.maintenance import add_maintenance_task
from ..store import Store
from .routes import blp
from .service import EXTENSION, JOB_KIND, ExportService, export_service
from .storage import make_storage

__all__ = ["GC_TASK", "ExportService", "collect_garbage", "export_service", "init"]

logger = logging.getLogger(__name__)

GC_TASK = "exports-gc"


def init(app: Flask, api: Any, domain: Domain, workers: Workers, store: Store) -> None:
    """Wire exports into the app: service, job handler, content listener, HTTP routes, GC."""
    settings = settings_of(app).exports
    storage = make_storage(settings, store)
    service = ExportService(domain, workers.queue, storage, store.exports, settings,
                            wake=workers.wake)
    app.extensions[EXTENSION] = service
    workers.register(JOB_KIND, service.build)
    domain.content.listeners.append(service.on_content_event)
    api.register_blueprint(blp)
    # GET never builds: released versions missing a current export (an upgrade changed the
    # format, a file was lost, a build failed long ago) are queued now.
    service.ensure_released_exports()

    # Run once per interval across every worker process (under a lease in the database).
    if settings.gc_interval > 0:
        add_maintenance_task(app, GC_TASK, settings.gc_interval, lambda: collect_garbage(app))


def collect_garbage(app: Flask) -> None:
    """The scheduled GC task: a thin wrapper that gives `ExportService.purge` an app context."""
    with app.app_context():
        try:
            export_service(app).purge()
        except Exception:  # the scheduler keeps running; the next run tries again
            logger.exception("export garbage collection failed")
