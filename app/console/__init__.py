"""The web console: server-rendered pages for curators and operators under /console/.

Sources and collections and their versions (with export state and actions), concepts, bulk
imports with live progress, and accounts (API tokens; users, for admins), for a visitor signed
in with an API token kept server-side
(`sessions.py`) or for anonymous visitors, who see what the public may see. Pages are built on
the domain and feature services (`Browse`, `Content`, `ExportService`, `ImportJobs`), never on
repositories, with the API's rights. Each section is a child blueprint of `web.console` plus an
entry in `SECTIONS`.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

from flask import Flask

from ..config import ConfigError
from ..domain import Domain
from ..jobs import Workers
from ..store import Store
from . import account, auth, concepts, imports, landing, sources, webhooks
from .sessions import SessionService
from .web import EXTENSION, ConsoleServices, ConsoleSettings, Section, console

logger = logging.getLogger(__name__)

SESSION_PURGE_TASK = "console-sessions-purge"

# The navigation, in order; a section's pages are one child blueprint.
SECTIONS = [Section("Sources", "console.sources.sources"),
            Section("Collections", "console.sources.collections"),
            Section("Organizations", "console.sources.orgs"),
            Section("Imports", "console.imports.jobs", signed_in_only=True),
            Section("Account", "console.account.account", signed_in_only=True),
            Section("Users", "console.account.users", signed_in_only=True, admins_only=True)]
for child in (auth.bp, sources.bp, concepts.bp, imports.bp, webhooks.bp, account.bp):
    console.register_blueprint(child)


def init(app: Flask, api: Any, domain: Domain, workers: Workers, store: Store) -> None:
    """Register the console (unless CONSOLE_ENABLED is false), its landing page at `/` and
    the purge of expired sessions."""
    settings = app.config
    if not settings["CONSOLE_ENABLED"]:
        return
    if not 1 <= settings["CONSOLE_PAGE_SIZE"] <= 500:
        raise ConfigError("CONSOLE_PAGE_SIZE must be 1..500")
    if settings["CONSOLE_SESSION_HOURS"] <= 0 or settings["CONSOLE_POLL_SECONDS"] <= 0:
        raise ConfigError("CONSOLE_SESSION_HOURS and CONSOLE_POLL_SECONDS must be positive")
    if settings["CONSOLE_SEARCH_COUNT_LIMIT"] < 1:
        raise ConfigError("CONSOLE_SEARCH_COUNT_LIMIT must be 1 or more")
    sessions = SessionService(store.console_sessions, domain.accounts,
                              timedelta(hours=float(settings["CONSOLE_SESSION_HOURS"])))
    app.extensions[EXTENSION] = ConsoleServices(
        domain=domain, sessions=sessions,
        settings=ConsoleSettings(page_size=int(settings["CONSOLE_PAGE_SIZE"]),
                                 poll_seconds=float(settings["CONSOLE_POLL_SECONDS"]),
                                 search_count_limit=int(settings["CONSOLE_SEARCH_COUNT_LIMIT"])),
        sections=list(SECTIONS),
        body_limits={"console.imports.jobs": imports.upload_limit})
    app.register_blueprint(console)
    app.register_blueprint(landing.bp)

    from ..ops import add_maintenance_task
    add_maintenance_task(app, SESSION_PURGE_TASK, settings["MAINTENANCE_INTERVAL"],
                         sessions.purge)
