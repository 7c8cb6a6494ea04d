"""The request handler of `termsync serve`: werkzeug's, sending the application's `Date`.

termsync sets `Date` on every response, and on diffs and export downloads it means "complete up
to" (docs/api.md, The Date header): the OpenMRS module sends it back as `updatedSince`. werkzeug's
server adds a `Date` of its own before the application's headers, and a client that reads the
first one would skip changes; `AppDateRequestHandler` sends the application's `Date` when it has
one, and its own otherwise. gunicorn cannot be made to do the same without patching its internals
(it drops an application's `Date`), so in production the proxy in front of it sends the `Date`
the application carries in `X-Termsync-Date` (deploy/nginx/termsync.conf, docs/deployment.md).
`AppDateRequestHandler` also leaves the line per request to termsync's access log
(`termsync.access`, with the request id) when that is on, so that a request is logged once.
"""

from __future__ import annotations

import logging

from werkzeug.serving import WSGIRequestHandler

from .config import SETTINGS

logger = logging.getLogger(__name__)


class AppDateRequestHandler(WSGIRequestHandler):
    """werkzeug's request handler, sending the application's `Date` rather than its own."""

    _date_sent = True

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        """werkzeug's line per request, unless the application writes its own access log."""
        settings = getattr(getattr(self.server, "app", None), "extensions", {}).get(SETTINGS)
        if settings is not None and settings.ops.access_log:
            return
        super().log_request(code, size)

    def send_response(self, code: int, message: str | None = None) -> None:
        """As the standard library's, minus the `Date` header (sent at the end if still missing)."""
        self.log_request(code)
        self.send_response_only(code, message)
        self.send_header("Server", self.version_string())
        self._date_sent = False

    def send_header(self, keyword: str, value: str) -> None:
        """Send one header, remembering whether it was `Date`."""
        if keyword.lower() == "date":
            self._date_sent = True
        super().send_header(keyword, value)

    def end_headers(self) -> None:
        """Add the server's `Date` only when the application sent none."""
        if not self._date_sent:
            super().send_header("Date", self.date_time_string())
            self._date_sent = True
        super().end_headers()
