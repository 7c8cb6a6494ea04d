"""Bulk import feature: OCL JSON lines, CSV and export zips loaded as asynchronous, resumable jobs."""

from __future__ import annotations

from typing import Any

from flask import Flask

from ..config import settings_of
from ..domain import Domain
from ..jobs import Workers
from .routes import EXTENSION, blp, tasks_blp
from .service import KIND, ImportJobs
from .store import upload_store


def init(app: Flask, api: Any, domain: Domain, workers: Workers) -> None:
    """Register the bulk-import blueprints and the job handler."""
    settings = settings_of(app).imports
    uploads = upload_store(settings.storage, domain.store, settings.directory)
    service = ImportJobs(domain, workers.queue, uploads, settings)
    app.extensions[EXTENSION] = service
    workers.register(KIND, service.run)
    api.register_blueprint(blp)
    api.register_blueprint(tasks_blp)
