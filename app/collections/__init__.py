"""Collections feature: collections and their references over HTTP (the domain is
app.domain.collections; a collection's content, versions and exports use the source routes)."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from typing import Any

from flask import Flask

from ..domain import Domain
from ..jobs import Workers
from ..store import Store
from ..timeutil import format_time

logger = logging.getLogger(__name__)

FOLLOWING_TASK = "collections-finish-following"


def init(app: Flask, api: Any, domain: Domain, workers: Workers, store: Store) -> None:
    """Register the collections blueprint, and the sweep that brings collections along after a
    crash between an item's write and its followers' (MongoDB; nothing to do on SQLite)."""
    from .routes import blp
    api.register_blueprint(blp)
    finish_following(domain)
    from ..ops import add_maintenance_task
    add_maintenance_task(app, FOLLOWING_TASK, app.config["MAINTENANCE_INTERVAL"],
                         lambda: finish_following(domain))


def finish_following(domain: Domain) -> int:
    """Bring along the followers of items marked more than five minutes ago (writes in flight in
    another process are younger); return how many items."""
    older_than = format_time(datetime.now(UTC) - timedelta(minutes=5))
    domain.collections.finish_pending(older_than=older_than)
    done = domain.collections.finish_following(older_than)
    if done:
        logger.info("brought the collections following %d items up to date", done)
    return done
