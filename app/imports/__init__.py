"""Bulk import feature: OCL JSON lines, CSV and export zips loaded as asynchronous, resumable jobs."""

from __future__ import annotations

from typing import Any

from flask import Flask

from ..config import settings_of
from ..domain import Domain
from ..jobs import Workers
from ..ops.maintenance import add_maintenance_task
from ..store import Store
from .routes import EXTENSION, blp, tasks_blp
from .service import KIND, ImportJobs
from .store import upload_store

GC_TASK = "imports-gc"


def init(app: Flask, api: Any, domain: Domain, workers: Workers, store: Store) -> None:
    """Register the bulk-import blueprints, the job handler and the collection of what dead
    uploads leave (maintenance, once per MAINTENANCE_INTERVAL across all processes)."""
    settings = settings_of(app)
    imports = settings.imports
    uploads = upload_store(imports.storage, store, imports.directory)
    service = ImportJobs(domain, workers.queue, uploads, imports, store)
    app.extensions[EXTENSION] = service
    workers.register(KIND, service.run)
    api.register_blueprint(blp)
    api.register_blueprint(tasks_blp)
    add_maintenance_task(app, GC_TASK, settings.ops.maintenance_interval,
                         service.collect_garbage)
