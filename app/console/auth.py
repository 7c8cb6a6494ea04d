"""Sign in with an API token, sign out, and the console's home page."""

from __future__ import annotations

import logging
from typing import Any

from flask import Blueprint, redirect, request, url_for

from ..domain.errors import Unauthorized
from ..imports.render import render_job
from .imports import import_jobs
from .web import (
    SESSION_COOKIE,
    Answer,
    clear_session_cookie,
    console,
    render,
    safe_next,
    services,
    set_session_cookie,
    visitor,
)

logger = logging.getLogger(__name__)

bp = Blueprint("auth", __name__)


@console.route("/")
def home() -> Answer:
    """The console's home: where to go, and (signed in) the caller's orgs and latest imports."""
    current = visitor()
    jobs: list[dict[str, Any]] = []
    if current.signed_in:
        found, _ = import_jobs().list_jobs(current.caller, 0, 5)
        jobs = [render_job(job) for job in found]
    return render("console/home.html", orgs=sorted(current.caller.orgs), jobs=jobs)


@bp.route("/sign-in", methods=["GET", "POST"])
def sign_in() -> Answer:
    """GET: the form; POST: a token in, a session cookie out (the form again if it is wrong)."""
    target = safe_next(request.values.get("next"))
    if request.method == "GET":
        if visitor().signed_in:
            return redirect(target, 303)
        return render("console/sign_in.html", next=target)
    try:
        session_id, _, _ = services().sessions.sign_in(request.form.get("token", ""))
        services().sessions.sign_out(request.cookies.get(SESSION_COOKIE))  # a session it replaces
    except Unauthorized as error:
        return render("console/sign_in.html", 401, next=target, error=error.message)
    response = redirect(target, 303)
    set_session_cookie(response, session_id,
                       max(1, int(services().sessions.lifetime.total_seconds())))
    return response


@bp.route("/sign-out", methods=["POST"])
def sign_out() -> Answer:
    """End the session (server-side) and forget the cookie."""
    services().sessions.sign_out(request.cookies.get(SESSION_COOKIE))
    response = redirect(url_for("console.home"), 303)
    clear_session_cookie(response)
    return response
