"""termsync server: `create_app(config)` builds config, database, domain, API and workers."""

from __future__ import annotations

import atexit
import logging
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from flask import Flask

from .config import load_config
from .domain import Domain
from .jobs import JobQueue, Workers
from .store import open_store
from .timeutil import format_time

logger = logging.getLogger(__name__)


def create_app(config: Mapping[str, Any] | None = None) -> Flask:
    """Build the Flask app; `config` overrides every other configuration layer."""
    settings = load_config(config)
    app = Flask(__name__)
    # Slash-less URLs match their route directly (GET/HEAD are answered as is; see app.api).
    app.url_map.strict_slashes = False
    app.config.update(settings)
    app.json.sort_keys = False  # type: ignore[attr-defined]
    logging.basicConfig(level=settings["LOG_LEVEL"],
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    store = open_store(settings["DATABASE_URI"], mongo_db=settings["MONGO_DB"],
                       sqlite_synchronous=settings["SQLITE_SYNCHRONOUS"],
                       sqlite_busy_timeout=settings["SQLITE_BUSY_TIMEOUT"])
    store.ensure_schema()
    domain = Domain(store)
    # On MongoDB, writes interrupted by a crash are finished or discarded (only those old enough
    # not to be in flight in another process); SQLite's writes are atomic and need nothing.
    store.items.finish_pending(older_than=format_time(datetime.now(UTC) - timedelta(minutes=5)))
    app.extensions["termsync"] = domain
    app.extensions["termsync.store"] = store

    if settings["ADMIN_TOKEN"]:
        domain.accounts.ensure_admin(settings["ADMIN_USER"], settings["ADMIN_TOKEN"])
        logger.info("admin user %r has the token from TERMSYNC_ADMIN_TOKEN", settings["ADMIN_USER"])

    queue = JobQueue(store.jobs)
    workers = Workers(app, queue, settings["JOB_LEASE_SECONDS"], settings["JOB_POLL_SECONDS"])
    app.extensions["termsync.jobs"] = workers

    from .api import init_api
    api = init_api(app)
    # Feature modules register their blueprints on `api` and their job handlers on `workers`.
    for init_feature in _features():
        init_feature(app, api, domain, workers)
    from .ops import add_maintenance_task, init_ops
    init_ops(app, api, domain, workers)  # after the features, so their job handlers are timed too
    add_maintenance_task(app, "items-finish-pending", settings["MAINTENANCE_INTERVAL"],
                         lambda: store.items.finish_pending(older_than=format_time(
                             datetime.now(UTC) - timedelta(minutes=5))))

    if settings["LOAD_DEMO"]:
        from .demo import load_demo
        load_demo(domain)
    # Tests run jobs by hand (workers.run_until_idle()) so that they stay deterministic.
    if settings["BACKGROUND_WORKERS"] and not app.config.get("TESTING"):
        workers.start(settings["BACKGROUND_WORKERS"])
        atexit.register(workers.stop)
    return app


def _features() -> list[Any]:
    """init(app, api, domain, workers) of each feature module (exports, bulk imports,
    collections, console)."""
    features: list[Any] = []
    from .exports import init as init_exports
    features.append(init_exports)
    from .imports import init as init_imports
    features.append(init_imports)
    from .collections import init as init_collections
    features.append(init_collections)
    from .console import init as init_console
    features.append(init_console)  # last: its pages use the services the others registered
    return features
