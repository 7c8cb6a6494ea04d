"""termsync server: `create_app(config)` builds config, database, domain, API and workers."""

from __future__ import annotations

import atexit
import logging
from typing import Any, Mapping

from flask import Flask

from .config import load_config
from .db import close_embedded, connect
from .domain import Domain

logger = logging.getLogger(__name__)


def create_app(config: Mapping[str, Any] | None = None) -> Flask:
    """Build the Flask app; `config` overrides every other configuration layer."""
    settings = load_config(config)
    app = Flask(__name__)
    app.config.update(settings)
    app.json.sort_keys = False  # type: ignore[attr-defined]
    logging.basicConfig(level=settings["LOG_LEVEL"],
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    client, db, store = connect(settings["MONGO_URI"], settings["MONGO_DB"],
                                settings["PERSIST_INTERVAL"])
    domain = Domain(db)
    domain.repos.ensure_indexes()
    app.extensions["termsync"] = domain
    app.extensions["termsync.mongo_client"] = client
    if store is not None:
        atexit.register(close_embedded, settings["MONGO_URI"])

    if settings["ADMIN_TOKEN"]:
        domain.accounts.ensure_admin(settings["ADMIN_USER"], settings["ADMIN_TOKEN"])
        logger.info("admin user %r has the token from TERMSYNC_ADMIN_TOKEN", settings["ADMIN_USER"])

    from .api import init_api
    init_api(app)

    if settings["LOAD_DEMO"]:
        from .demo import load_demo
        load_demo(domain)
    return app
