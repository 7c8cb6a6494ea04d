"""Accounts: a user's page (who they are, their API tokens: issue one, shown once; revoke one)
for the user themself and admins, and for admins the users, each deactivated or reactivated
with one button. Built on `Accounts`, with the API's rights: a page someone may not see is the
API's 403 (or 404 for a user that does not exist)."""

from __future__ import annotations

import logging
from typing import Any

from flask import Blueprint, redirect, request, url_for

from ..domain.accounts import Caller, token_expiry, token_state
from ..domain.errors import Invalid
from .web import (
    Answer,
    domain,
    page_number,
    pager,
    render,
    require_sign_in,
    services,
    text_arg,
    visitor,
)

logger = logging.getLogger(__name__)

bp = Blueprint("account", __name__)

# What the expiry menu of the token form offers, in days (None: never).
EXPIRY_CHOICES: tuple[tuple[int | None, str], ...] = (
    (None, "Never"), (7, "In 7 days"), (30, "In 30 days"), (90, "In 90 days"),
    (365, "In a year"))
LABEL_LENGTH = 200
NOTICES = {"revoked": "Token {token} was revoked: requests with it are refused from now on.",
           "deactivated": "{user} is deactivated: their tokens are refused and their console "
                          "sessions ended.",
           "reactivated": "{user} is active again."}


@bp.route("/account/")
def account() -> Answer:
    """The signed-in visitor's own account page."""
    who = require_sign_in()
    return redirect(url_for("console.account.user", username=who.username), 303)


@bp.route("/accounts/")
def users() -> Answer:
    """Every user (administrators), searchable by username and name, with their state."""
    who = require_sign_in()
    query = text_arg("q")
    page, limit = page_number(), services().settings.page_size
    found, total = domain().accounts.list_users(who, query, (page - 1) * limit, limit)
    return render("console/users.html", users=found, q=query, pager=pager(page, limit, total))


def _account_page(who: Caller, username: str, status: int = 200, **context: Any) -> Answer:
    accounts = domain().accounts
    user = accounts.require_account(who, username)
    show_revoked = request.args.get("revoked") == "1"
    tokens = [dict(record, state=token_state(record))
              for record in accounts.list_tokens(who, username, include_revoked=show_revoked)]
    notice = NOTICES.get(request.args.get("notice", ""))
    session = visitor().session
    return render("console/account.html", status, user=user, tokens=tokens,
                  show_revoked=show_revoked, expiry_choices=EXPIRY_CHOICES,
                  current_token=session.token_hash if session is not None else "",
                  notice=notice.format(token=request.args.get("token", ""), user=username)
                  if notice else None, **context)


@bp.route("/accounts/<username>/")
def user(username: str) -> Answer:
    """A user's account: their details and API tokens (the user themself or an admin)."""
    return _account_page(require_sign_in(), username)


@bp.route("/accounts/<username>/tokens", methods=["POST"])
def issue_token(username: str) -> Answer:
    """Issue a token: the page again, showing its value this once."""
    who = require_sign_in()
    label = request.form.get("label", "").strip() or None
    days = {str(days): days for days, _ in EXPIRY_CHOICES}.get(
        request.form.get("expires_in_days", ""), -1)
    if days == -1 or (label is not None and len(label) > LABEL_LENGTH):
        raise Invalid(f"The token was not issued: choose an expiry from the list and a label of "
                      f"at most {LABEL_LENGTH} characters.")
    token, record = domain().accounts.issue_token(
        who, username, label=label, expires_on=token_expiry(days=days))
    return _account_page(who, username, new_token=token, new_record=record)


@bp.route("/accounts/<username>/tokens/<token_id>/revoke", methods=["POST"])
def revoke_token(username: str, token_id: str) -> Answer:
    """Revoke a token (the one this session uses too: then the session ends)."""
    who = require_sign_in()
    domain().accounts.revoke_token(who, username, token_id)
    return redirect(url_for("console.account.user", username=username, notice="revoked",
                            token=token_id), 303)


@bp.route("/accounts/<username>/deactivate", methods=["POST"])
def deactivate(username: str) -> Answer:
    """Deactivate a user (administrators)."""
    domain().accounts.set_active(require_sign_in(), username, False)
    return redirect(url_for("console.account.user", username=username, notice="deactivated"),
                    303)


@bp.route("/accounts/<username>/reactivate", methods=["POST"])
def reactivate(username: str) -> Answer:
    """Reactivate a user (administrators)."""
    domain().accounts.set_active(require_sign_in(), username, True)
    return redirect(url_for("console.account.user", username=username, notice="reactivated"),
                    303)
