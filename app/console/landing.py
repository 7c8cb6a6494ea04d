"""`/` for browsers: a small page linking to the console and the API docs.

API clients (anything that does not prefer HTML) get the same 404 as before the console existed:
`/` is not part of the OCL API.
"""

from __future__ import annotations

from flask import Blueprint, Response, render_template, request
from werkzeug.exceptions import NotFound
from werkzeug.wrappers import Response as Answer

bp = Blueprint("landing", __name__, template_folder="templates")


# Every method, so that anything but a browser's GET gets the very 404 it got before.
@bp.route("/", methods=["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"],
          provide_automatic_options=False)
def landing() -> Answer:
    """The landing page, for a client that prefers HTML to JSON."""
    if request.method not in ("GET", "HEAD") or request.accept_mimetypes.best_match(
            ["application/json", "text/html"]) != "text/html":
        raise NotFound()
    return Response(render_template("console/landing.html"), mimetype="text/html",
                    headers={"Content-Security-Policy": "default-src 'self'; object-src 'none'; "
                                                        "frame-ancestors 'none'",
                             "X-Content-Type-Options": "nosniff"})
