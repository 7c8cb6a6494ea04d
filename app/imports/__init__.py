"""Bulk import feature: OCL JSON lines, CSV and export zips loaded as asynchronous, resumable jobs."""

from __future__ import annotations

from typing import Any

from flask import Flask

from ..config import ConfigError
from ..domain import Domain
from ..jobs import Workers
from .service import KIND, ImportJobs, ImportLimits
from .store import upload_store


def init(app: Flask, api: Any, domain: Domain, workers: Workers) -> None:
    """Register the bulk-import blueprint and its job handler."""
    settings = app.config
    for key in ("IMPORT_MAX_BYTES", "IMPORT_MAX_LINES", "IMPORT_MAX_LINE_BYTES",
                "IMPORT_MAX_ACTIVE_JOBS", "IMPORT_BATCH_SIZE"):
        if settings[key] < 1:
            raise ConfigError(f"{key} must be 1 or more")
    limits = ImportLimits(max_bytes=settings["IMPORT_MAX_BYTES"],
                          max_lines=settings["IMPORT_MAX_LINES"],
                          max_active_jobs=settings["IMPORT_MAX_ACTIVE_JOBS"],
                          batch_size=settings["IMPORT_BATCH_SIZE"],
                          max_line_bytes=settings["IMPORT_MAX_LINE_BYTES"])
    service = ImportJobs(domain, workers.queue,
                         upload_store(settings["IMPORT_STORAGE"], domain.store,
                                      settings["IMPORT_DIR"]),
                         limits)
    app.extensions["termsync.imports"] = service
    workers.register(KIND, service.run)
    from .routes import blp, tasks_blp
    api.register_blueprint(blp)
    api.register_blueprint(tasks_blp)
