"""termsync server: `create_app(config)` builds config, database, domain, API and workers."""

from __future__ import annotations

import atexit
import logging
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from flask import Flask

from .bodies import WholeBodies
from .config import SETTINGS, Settings, load_config
from .domain import Domain
from .jobs import JobQueue, Workers
from .store import open_store
from .timeutil import format_time

logger = logging.getLogger(__name__)


def create_app(config: Mapping[str, Any] | None = None) -> Flask:
    """Build the Flask app; `config` overrides every other configuration layer."""
    flat = load_config(config)  # every setting is checked here, before anything connects
    settings = Settings.from_config(flat)
    app = Flask(__name__)
    app.wsgi_app = WholeBodies(app.wsgi_app)  # type: ignore[method-assign]
    # Slash-less URLs match their route directly (GET/HEAD are answered as is; see app.api).
    app.url_map.strict_slashes = False
    app.config.update(flat)
    app.extensions[SETTINGS] = settings
    app.json.sort_keys = False  # type: ignore[attr-defined]
    logging.basicConfig(level=settings.ops.log_level,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    database = settings.database
    store = open_store(database.uri, mongo_db=database.mongo_db,
                       sqlite_synchronous=database.sqlite_synchronous,
                       sqlite_busy_timeout=database.sqlite_busy_timeout)
    store.ensure_schema()
    domain = Domain(store)
    # On MongoDB, writes interrupted by a crash are finished or discarded (only those old enough
    # not to be in flight in another process); SQLite's writes are atomic and need nothing.
    domain.content.finish_pending(older_than=format_time(datetime.now(UTC) - timedelta(minutes=5)))
    app.extensions["termsync"] = domain
    app.extensions["termsync.store"] = store

    if settings.admin_token:
        domain.accounts.ensure_admin(settings.admin_user, settings.admin_token)
        logger.debug("admin user %r has the token from TERMSYNC_ADMIN_TOKEN", settings.admin_user)

    jobs = settings.jobs
    workers = Workers(app, JobQueue(store.jobs), jobs.lease_seconds, jobs.poll_seconds,
                      jobs.max_attempts)
    app.extensions["termsync.jobs"] = workers

    from .api import init_api
    from .collections import init as init_collections
    from .console import init as init_console
    from .exports import init as init_exports
    from .feeds import init as init_feeds
    from .imports import init as init_imports
    from .ops import add_maintenance_task, init_ops
    from .webhooks import init as init_webhooks

    api = init_api(app)
    init_ops(app, api, domain, workers, store)
    # Feature packages register their blueprints on `api` and their job handlers on `workers`,
    # and take from `store` the repositories they own (tests/test_layering.py says which); the
    # console last: its pages use the services the others registered.
    for init_feature in (init_exports, init_imports, init_collections, init_webhooks,
                         init_feeds, init_console):
        init_feature(app, api, domain, workers, store)
    add_maintenance_task(app, "items-finish-pending", settings.ops.maintenance_interval,
                         lambda: domain.content.finish_pending(older_than=format_time(
                             datetime.now(UTC) - timedelta(minutes=5))))

    if settings.load_demo:
        from .demo import load_demo
        load_demo(domain)
    # Tests run jobs by hand (workers.run_until_idle()) so that they stay deterministic.
    if jobs.background_workers and not settings.testing:
        workers.start(jobs.background_workers)
        atexit.register(workers.stop)
    return app
