"""What every console page shares: the visitor (caller and session), CSRF on every form, rendering,
paging, errors as pages, and the security headers.

Every console request resolves its caller the way the API does (`Accounts.caller_for_token`, from
the token its session keeps), and every POST must carry the form's CSRF token: the session's own
when signed in, or (for the sign-in form) a random value also held in a cookie the page set.
"""

from __future__ import annotations

import logging
import math
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from flask import Blueprint, Response, current_app, g, redirect, render_template, request, url_for
from werkzeug.exceptions import HTTPException, NotFound
from werkzeug.wrappers import Response as Answer

from ..domain import Domain
from ..domain.accounts import ANONYMOUS, ORG, Caller
from ..domain.content import is_collection
from ..domain.errors import DomainError, Unauthorized
from ..domain.values import line_problem
from ..faults import RETRY_AFTER, fault_of
from ..model import Source
from .sessions import ConsoleSession, SessionService, same_token

logger = logging.getLogger(__name__)

EXTENSION = "termsync.console"
SESSION_COOKIE = "termsync_console"
CSRF_COOKIE = "termsync_console_csrf"
CSRF_FIELD = "csrf_token"
COOKIE_PATH = "/console/"
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; script-src 'self'; style-src 'self'; "
                               "img-src 'self' data:; object-src 'none'; base-uri 'none'; "
                               "form-action 'self'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
}

console = Blueprint("console", __name__, url_prefix="/console", template_folder="templates",
                    static_folder="static")


@dataclass(frozen=True)
class Section:
    """An entry of the console's navigation: a label and the endpoint of its first page."""

    label: str
    endpoint: str
    signed_in_only: bool = False
    admins_only: bool = False


@dataclass(frozen=True)
class ConsoleSettings:
    """The console's configuration (CONSOLE_* keys)."""

    page_size: int
    poll_seconds: float
    search_count_limit: int


@dataclass
class ConsoleServices:
    """What the console's views use: the domain, the feature services and the sessions."""

    domain: Domain
    sessions: SessionService
    settings: ConsoleSettings
    sections: list[Section]
    # Bodies larger than MAX_CONTENT_LENGTH that an endpoint accepts (uploads), read before the
    # CSRF check parses the form.
    body_limits: dict[str, Callable[[], int]]


@dataclass(frozen=True)
class Visitor:
    """Who is looking: the caller (as the API would see them) and their console session."""

    caller: Caller
    session: ConsoleSession | None = None

    @property
    def signed_in(self) -> bool:
        """Whether the visitor has a console session."""
        return self.session is not None


class SignInNeeded(Exception):
    """The page needs a signed-in visitor: the handler sends them to the sign-in form."""


class Refused(HTTPException):
    """A form post without its CSRF token."""

    code = 403
    description = ("This form did not come from this console page, or it expired (its CSRF "
                   "token is missing or wrong). Reload the page and try again.")


def services() -> ConsoleServices:
    """The console services of the running app."""
    return current_app.extensions[EXTENSION]


def domain() -> Domain:
    """The domain services of the running app."""
    return services().domain


def visitor() -> Visitor:
    """The visitor of this request (resolved once per request)."""
    if "console_visitor" not in g:
        resumed = services().sessions.resume(request.cookies.get(SESSION_COOKIE))
        if resumed is None:
            g.console_visitor = Visitor(ANONYMOUS)
            if request.cookies.get(SESSION_COOKIE):
                g.console_drop_cookie = True  # expired or revoked: forget it
        else:
            g.console_visitor = Visitor(*resumed)
    return g.console_visitor


def caller() -> Caller:
    """The caller of this request."""
    return visitor().caller


def require_sign_in() -> Caller:
    """The signed-in caller; a visitor who is not signed in is sent to the sign-in form."""
    current = visitor()
    if not current.signed_in:
        raise SignInNeeded()
    return current.caller


def csrf_token() -> str:
    """The CSRF token forms of this page carry."""
    current = visitor()
    if current.session is not None:
        return current.session.csrf_token
    if "console_csrf" not in g:
        g.console_csrf = request.cookies.get(CSRF_COOKIE) or secrets.token_urlsafe(32)
    return str(g.console_csrf)


def csrf_valid() -> bool:
    """Whether this POST carries the token its page was given."""
    current = visitor()
    given = request.form.get(CSRF_FIELD)
    if current.session is not None:
        return same_token(current.session.csrf_token, given)
    expected = request.cookies.get(CSRF_COOKIE)
    return expected is not None and same_token(expected, given)


@console.before_request
def _check_form() -> None:
    """Every POST carries its form's CSRF token, or is refused before any view runs."""
    if request.method != "POST":
        return
    limit = services().body_limits.get(request.endpoint or "")
    if limit is not None:
        request.max_content_length = limit()
    if not csrf_valid():
        logger.warning("console: refused a %s to %s without a valid CSRF token",
                       request.method, request.path)
        raise Refused()



@console.after_request
def _headers(response: Answer) -> Answer:
    """Security headers on every console answer; cookies the request decided on."""
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
    response.headers.setdefault("Cache-Control", "no-store")
    if g.get("console_drop_cookie"):
        response.delete_cookie(SESSION_COOKIE, path=COOKIE_PATH)
    if "console_csrf" in g and not visitor().signed_in \
            and request.cookies.get(CSRF_COOKIE) != g.console_csrf:
        response.set_cookie(CSRF_COOKIE, g.console_csrf, path=COOKIE_PATH, httponly=True,
                            samesite="Strict", secure=request.is_secure)
    return response


def set_session_cookie(response: Answer, session_id: str, max_age: int) -> None:
    """The session cookie: HttpOnly, SameSite=Strict, Secure behind TLS, the console's path."""
    response.set_cookie(SESSION_COOKIE, session_id, max_age=max_age, path=COOKIE_PATH,
                        httponly=True, samesite="Strict", secure=request.is_secure)
    response.delete_cookie(CSRF_COOKIE, path=COOKIE_PATH)


def clear_session_cookie(response: Answer) -> None:
    """Tell the browser to forget its session cookie."""
    response.delete_cookie(SESSION_COOKIE, path=COOKIE_PATH)


# --- rendering ------------------------------------------------------------------------------

def render(template: str, http_status: int = 200, **context: Any) -> Answer:
    """A console page: the template with the visitor, navigation and CSRF token."""
    settings = services().settings
    current = visitor()
    sections = [section for section in services().sections
                if (current.signed_in or not section.signed_in_only)
                and (current.caller.is_admin or not section.admins_only)]
    body = render_template(template, visitor=current, sections=sections,
                           csrf_field=CSRF_FIELD, csrf_token=csrf_token(), repo_args=source_args,
                           poll_seconds=settings.poll_seconds, **context)
    return Response(body, status=http_status, mimetype="text/html")


def owner_kind(owner_type: str) -> str:
    """The URL segment of an owner type: 'orgs' or 'users'."""
    return "orgs" if owner_type == ORG else "users"


def source_args(source: Source) -> dict[str, str]:
    """url_for arguments naming a source or a collection (templates: `repo_args`)."""
    return {"owner_kind": owner_kind(source.owner_type), "owner_id": source.owner,
            "repo_path": "collections" if is_collection(source) else "sources",
            "source_id": source.id}


def page_number(name: str = "page") -> int:
    """A 1-based page number from the query (anything unusable is page 1)."""
    try:
        return max(1, min(int(request.args.get(name, "1")), 10**9))
    except ValueError:
        return 1


def text_arg(name: str) -> str | None:
    """A query parameter, stripped; empty means absent (as in the API)."""
    value = (request.args.get(name) or "").strip()
    return value or None


@dataclass(frozen=True)
class Pager:
    """Where a paged list is: page n of m, with links to the neighbours."""

    page: int
    pages: int
    total: int
    more: bool
    previous_url: str | None
    next_url: str | None


def pager(page: int, limit: int, total: int, more: bool = False, name: str = "page") -> Pager:
    """The pager of this request's list (its other query parameters kept)."""
    pages = max(1, math.ceil(total / limit)) + (1 if more else 0)

    def link(number: int) -> str:
        """This request's URL at another page."""
        params = request.args.to_dict()
        params[name] = str(number)
        return f"{request.path}?{urlencode(params)}"

    return Pager(page, pages, total, more, link(page - 1) if page > 1 else None,
                 link(page + 1) if page < pages else None)


def safe_next(target: str | None) -> str:
    """Where to go after signing in: a console path of this site, never another site, and
    nothing a `Location` header cannot carry (control characters: CR/LF would split it)."""
    if target and target.startswith(COOKIE_PATH) and "//" not in target and "\\" not in target \
            and line_problem(target) is None:
        return target
    return url_for("console.home")


# --- errors as pages ------------------------------------------------------------------------

@console.errorhandler(SignInNeeded)
def _sign_in_needed(error: SignInNeeded) -> Answer:
    return redirect(url_for("console.auth.sign_in", next=request.full_path.rstrip("?")), 303)


@console.errorhandler(DomainError)
def _domain_error(error: DomainError) -> Answer:
    if isinstance(error, Unauthorized) and not visitor().signed_in:
        return _sign_in_needed(SignInNeeded())
    response = render("console/error.html", error.status, status=error.status,
                      message=error.message, errors=error.errors)
    for name, value in error.headers.items():
        if name.lower() != "www-authenticate":
            response.headers[name] = value
    return response


@console.errorhandler(HTTPException)
def _http_error(error: HTTPException) -> Answer:
    status = error.code or 500
    return render("console/error.html", status, status=status,
                  message=error.description or "", errors=None)


@console.errorhandler(Exception)
def _unexpected(error: Exception) -> Answer:
    store = current_app.extensions["termsync.store"]
    fault = fault_of(error, store)
    if fault is not None:
        logger.error("storage fault: %s", fault)
        response = render("console/error.html", 503, status=503, errors=None,
                          message=fault.message)
        response.headers["Retry-After"] = str(RETRY_AFTER)
        return response
    if store.is_unavailable(error):
        logger.error("database unavailable: %s: %s", error.__class__.__name__, error)
        response = render("console/error.html", 503, status=503, errors=None,
                          message="The database is unavailable; try again shortly.")
        response.headers["Retry-After"] = "5"
        return response
    logger.error("console: unhandled error", exc_info=error)
    return render("console/error.html", 500, status=500, errors=None,
                  message="Something went wrong on the server; it has been logged.")


@console.route("/<path:unknown>")
def not_found(unknown: str) -> Answer:
    """Any other /console/ path: a 404 page (not the API's JSON)."""
    raise NotFound("There is no console page here.")


# --- template filters -----------------------------------------------------------------------

@console.app_template_filter("thousands")
def _thousands(value: int | None) -> str:
    return "—" if value is None else f"{value:,}"


@console.app_template_filter("filesize")
def _filesize(value: int | None) -> str:
    if value is None:
        return "—"
    size = float(value)
    for unit in ("bytes", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{int(size)} bytes" if unit == "bytes" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{value} bytes"


@console.app_template_filter("utc")
def _utc(value: str | None) -> str:
    """A stored time (ISO 8601 UTC) as people read it: 2026-11-21 23:51:03 UTC."""
    if not value:
        return "—"
    return f"{value[:10]} {value[11:19]} UTC" if len(value) >= 19 else value
