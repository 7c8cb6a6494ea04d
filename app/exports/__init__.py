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
GC_JOB_ID = "termsync-exports-gc"


def init(app: Flask, api: Any, domain: Domain, workers: Workers) -> None:
    """Wire exports into the app: service, job handler, content listener, HTTP routes, GC."""
    storage = make_storage(app.config, domain.db)
    service = ExportService(domain, workers.queue, storage, app.config, wake=workers.wake)
    service.records.ensure_indexes()
    app.extensions[EXTENSION] = service
    workers.register(JOB_KIND, service.build)
    domain.content.listeners.append(service.on_content_event)

    from ..api.exports import blp
    api.register_blueprint(blp)

    if app.config["BACKGROUND_WORKERS"] and not app.config.get("TESTING"):
        start_gc_scheduler(app)


def export_service(app: Flask | None = None) -> ExportService:
    """The export service of an app (the current one by default)."""
    return (app or current_app).extensions[EXTENSION]


def collect_garbage(app: Flask) -> None:
    """The scheduled GC job: a thin wrapper that gives `ExportService.purge` an app context."""
    with app.app_context():
        try:
            export_service(app).purge()
        except Exception:  # the scheduler keeps running; the next run tries again
            logger.exception("export garbage collection failed")


def start_gc_scheduler(app: Flask) -> Any:
    """Run the export GC every EXPORT_GC_INTERVAL seconds in a background scheduler."""
    interval = float(app.config.get("EXPORT_GC_INTERVAL", 3600.0))
    if interval <= 0:
        return None
    from apscheduler.schedulers.background import BackgroundScheduler

    scheduler = BackgroundScheduler(timezone="UTC")
    scheduler.add_job(collect_garbage, "interval", seconds=interval, args=[app], id=GC_JOB_ID,
                      coalesce=True, max_instances=1, replace_existing=True)
    scheduler.start()
    app.extensions["termsync.exports.scheduler"] = scheduler
    import atexit

    def stop() -> None:
        if scheduler.running:
            scheduler.shutdown(wait=False)

    atexit.register(stop)
    return scheduler
