"""The HTTP layer: flask-smorest blueprints, one per resource, and the one error handler."""

from __future__ import annotations

import logging
import threading
from typing import Any

import flask_smorest
from flask import Flask, Response, current_app, g, request
from werkzeug.exceptions import ClientDisconnected, HTTPException, InternalServerError
from werkzeug.http import http_date

from .. import timeutil
from ..bodies import ShortBody
from ..domain.errors import DomainError
from ..faults import RETRY_AFTER, fault_of
from . import concepts, mappings, orgs, repos, sources, users, versions
from .common import DATE_CARRIER, error_response

logger = logging.getLogger(__name__)

BLUEPRINTS = [orgs.blp, users.blp, sources.blp, repos.blp, versions.blp, concepts.blp, mappings.blp]
# Methods answered at a slash-less URL as at the slashed one; the others are redirected (308).
SLASHLESS_METHODS = frozenset({"GET", "HEAD"})


class Api(flask_smorest.Api):  # type: ignore[misc]
    """flask-smorest's Api, whose OpenAPI document is built when something first reads `spec`
    (the `/api/openapi.json` request, a test), not when each blueprint is registered: building it
    deep-copies every schema of every view, about 0.5 s, which every gunicorn worker and every
    test app paid at startup for a document few of them ever serve. The document is the same:
    the blueprints are documented in the order they were registered."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._undocumented: list[tuple[Any, str, Any]] = []
        self._documenting = threading.RLock()
        super().__init__(*args, **kwargs)

    @property
    def spec(self) -> Any:
        """The OpenAPI document, with every blueprint registered so far documented in it."""
        with self._documenting:  # another thread may be half way through a blueprint
            while self._undocumented:
                blueprint, name, parameters = self._undocumented.pop(0)
                blueprint.register_views_in_doc(self, self._app, self._spec, name=name,
                                                parameters=parameters)
                self._spec.tag({"name": name, "description": blueprint.description})
        return self._spec

    @spec.setter
    def spec(self, value: Any) -> None:
        self._spec = value

    def register_blueprint(self, blp: Any, *, parameters: Any = None, **options: Any) -> None:
        """Register `blp` on the app now; document it when the document is first read."""
        name = options.get("name", blp.name)
        self._app.extensions["flask-smorest"]["blp_name_to_api"][name] = self
        self._app.register_blueprint(blp, **options)
        self._undocumented.append((blp, name, parameters))


def init_api(app: Flask) -> Api:
    """Register the API, its blueprints and error handlers on the app."""
    app.config.setdefault("API_TITLE", "termsync")
    app.config.setdefault("API_VERSION", "1.0")
    app.config.setdefault("OPENAPI_VERSION", "3.0.3")
    app.config.setdefault("OPENAPI_URL_PREFIX", "/api")
    app.config.setdefault("OPENAPI_JSON_PATH", "openapi.json")
    app.config.setdefault("OPENAPI_SWAGGER_UI_PATH", "/docs")
    app.config.setdefault("OPENAPI_SWAGGER_UI_URL", "https://cdn.jsdelivr.net/npm/swagger-ui-dist/")
    api = Api(app, spec_kwargs={"info": {"description": (
        "Terminology distribution server with the Open Concept Lab URL scheme. "
        "Authenticate with `Authorization: Token <key>`.")}})
    api.spec.components.security_scheme(
        "Token", {"type": "apiKey", "in": "header", "name": "Authorization",
                  "description": "`Token <key>`"})
    api.spec.options["security"] = [{"Token": []}, {}]
    for blueprint in BLUEPRINTS:
        api.register_blueprint(blueprint)
    register_error_handlers(app)
    register_http_rules(app)
    return api


def register_http_rules(app: Flask) -> None:
    """Slash-less URLs (docs/api.md, Conventions), the `Date` header every response carries, and the
    kind of repository a URL names (`sources` or `collections`, see common.owner_routes)."""

    @app.url_value_preprocessor
    def take_repo_kind(endpoint: str | None, values: dict[str, Any] | None) -> None:
        if values and "repo_kind" in values:
            g.repo_kind = values.pop("repo_kind")

    @app.before_request
    def redirect_slashless_writes() -> Response | None:
        # GET/HEAD at a slash-less URL are answered directly: a redirect would lose the OpenMRS
        # module's `Compress` header, and its release probe counts any redirect as "ready".
        rule = request.url_rule
        if rule is None or request.method in SLASHLESS_METHODS:
            return None
        if not rule.rule.endswith("/") or request.path.endswith("/"):
            return None
        query = request.query_string.decode("latin-1")
        location = f"{request.script_root}{request.path}/" + (f"?{query}" if query else "")
        return error_response(308, f"This resource is {location}; send the request there.",
                              headers={"Location": location})

    @app.after_request
    def default_date(response: Response) -> Response:
        # Diffs and export downloads set their own Date (the time they are complete up to). The
        # same value goes out under a name no HTTP server claims for itself: gunicorn replaces
        # `Date` with its own clock's, and the proxy in front (deploy/nginx/termsync.conf) turns
        # this header back into `Date` (docs/deployment.md). Every response carries it, so that
        # the proxy never has to invent one.
        if "Date" not in response.headers:
            response.headers["Date"] = http_date(timeutil.now())
        response.headers[DATE_CARRIER] = response.headers["Date"]
        return response


def register_error_handlers(app: Flask) -> None:
    """Every error leaves as {code, status, message, errors?} JSON; never HTML, never a trace."""

    @app.errorhandler(DomainError)
    def domain_error(error: DomainError) -> Any:
        return error_response(error.status, error.message, error.errors, error.headers)

    @app.errorhandler(Exception)
    def unexpected(error: Exception) -> Any:
        """A storage fault (a full or read-only disk) or the database down or busy is a 503 with
        Retry-After; anything else a logged 500."""
        store = current_app.extensions["termsync.store"]
        fault = fault_of(error, store)
        if fault is not None:
            logger.error("storage fault: %s", fault)
            return error_response(503, fault.message, headers={"Retry-After": str(RETRY_AFTER)})
        if store.is_unavailable(error):
            logger.error("database unavailable: %s: %s", error.__class__.__name__, error)
            return error_response(503, "The database is unavailable; try again shortly.",
                                  headers={"Retry-After": "5"})
        return http_error(InternalServerError(original_exception=error))

    @app.errorhandler(RecursionError)  # json.loads of a body nested thousands of levels deep
    def nested_too_deeply(error: RecursionError) -> Any:
        return error_response(400, "The request body is nested too deeply to read.")

    @app.errorhandler(HTTPException)
    def http_error(error: HTTPException) -> Any:
        if isinstance(error, ClientDisconnected):  # a chunked body cut short, as a short one
            error = ShortBody()
        data = getattr(error, "data", None) or {}
        messages = data.get("messages")
        code = error.code or 500
        if code >= 500:
            original = getattr(error, "original_exception", None)
            if original is not None:
                logger.error("unhandled error", exc_info=original)
            return error_response(code, "Internal server error.")
        response = error_response(code, error.description or "", messages)
        for key, value in (error.get_headers() if hasattr(error, "get_headers") else []):
            if key.lower() not in ("content-type", "content-length"):
                response.headers[key] = value
        return response
