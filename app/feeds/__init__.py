"""Atom feeds of released versions: one per source or collection (`{repo}/feed.xml`) and one of
the server's public repositories (`/feed.xml`), in the shape of HL7's FHIR Syndication IG.

`atom.py` writes the document, `service.py` chooses the entries, `routes.py` serves them with
conditional GET.
"""

from __future__ import annotations

from typing import Any

from flask import Flask

from ..domain import Domain
from ..jobs import Workers
from ..store import Store
from .routes import EXTENSION, blp
from .service import FeedService


def init(app: Flask, api: Any, domain: Domain, workers: Workers, store: Store) -> None:
    """Register the feeds (they read export states from the export service)."""
    from ..exports import export_service
    app.extensions[EXTENSION] = FeedService(domain, export_service(app).status)
    api.register_blueprint(blp)
