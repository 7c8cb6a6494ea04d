"""Users: the caller (/user/), accounts (admins create, deactivate and reactivate them) and
their API tokens (list, issue, revoke)."""

from __future__ import annotations

from typing import Any

from flask import Response
from flask.views import MethodView

from ..domain.accounts import require_admin, require_login, token_expiry, token_state
from ..domain.payloads import UserSchema
from .common import current_caller, domain, json_response, list_response, render_user
from .docs import errors
from .orgs import render_org
from .parsing import Blueprint
from .schemas import (
    ListArgsSchema,
    OrgOut,
    SearchListArgsSchema,
    TokenIn,
    TokenInfoOut,
    TokenListArgsSchema,
    TokenOut,
    UserOut,
)

blp = Blueprint("users", __name__, description="User accounts and API tokens.")


@blp.route("/users/")
class Users(MethodView):
    @blp.arguments(SearchListArgsSchema, location="query", error_status_code=400)
    @blp.response(200, UserOut(many=True))
    @errors(blp, 400, 401, 403)
    def get(self, args: dict[str, Any]) -> Response:
        """List users (administrators only; `q`: text in the username or name)."""
        caller = current_caller()
        return list_response(args, lambda skip, limit: domain().accounts.list_users(
            caller, args["q"], skip, limit), render_user)

    @blp.arguments(UserSchema)
    @blp.response(201, UserOut)
    @errors(blp, 401, 403, 409, 422)
    def post(self, payload: dict[str, Any]) -> Response:
        """Create a user (administrators only)."""
        require_admin(current_caller())
        user = domain().accounts.create_user(
            payload["username"], name=payload.get("name"), email=payload.get("email"),
            company=payload.get("company"), is_admin=payload.get("is_admin", False))
        return json_response(render_user(user), 201, {"Location": f"/users/{user['_id']}/"})


@blp.route("/users/<username>/")
class User(MethodView):
    @blp.response(200, UserOut)
    @errors(blp, 401, 404)
    def get(self, username: str) -> Response:
        """One user (the email only to the user themself and administrators)."""
        current_caller()
        return json_response(render_user(domain().accounts.get_user(username)))

    @blp.response(204)
    @errors(blp, 401, 403, 404)
    def delete(self, username: str) -> Response:
        """Deactivate a user (administrators only, not themselves; as OCL): their tokens are
        401 at once and their console sessions end; their content stays and the exports and
        imports they started keep running. `PUT .../reactivate/` undoes it."""
        domain().accounts.set_active(current_caller(), username, False)
        return Response(status=204)


@blp.route("/user/")
class Caller(MethodView):
    @blp.response(200, UserOut)
    @errors(blp, 401)
    def get(self) -> Response:
        """The caller's own account."""
        caller = current_caller()
        require_login(caller)
        assert caller.username is not None
        return json_response(render_user(domain().accounts.get_user(caller.username)))


@blp.route("/users/<username>/orgs/")
class UserOrgs(MethodView):
    @blp.arguments(ListArgsSchema, location="query", error_status_code=400)
    @blp.response(200, OrgOut(many=True))
    @errors(blp, 400, 401, 404)
    def get(self, args: dict[str, Any], username: str) -> Response:
        """The organizations a user belongs to (those the caller may see)."""
        caller = current_caller()
        return list_response(args, lambda skip, limit: domain().accounts.orgs_of_user(
            caller, username, skip, limit), render_org)


@blp.route("/user/orgs/")
class CallerOrgs(MethodView):
    @blp.arguments(ListArgsSchema, location="query", error_status_code=400)
    @blp.response(200, OrgOut(many=True))
    @errors(blp, 400, 401)
    def get(self, args: dict[str, Any]) -> Response:
        """The organizations the caller belongs to."""
        caller = current_caller()
        require_login(caller)
        assert caller.username is not None
        username = caller.username
        return list_response(args, lambda skip, limit: domain().accounts.orgs_of_user(
            caller, username, skip, limit), render_org)


def render_token(record: dict[str, Any], token: str | None = None) -> dict[str, Any]:
    """A token's record as the API shows it (with its value only when just issued)."""
    shown = {"id": record["id"], "username": record["username"],
             "url": f"/users/{record['username']}/tokens/{record['id']}/",
             "prefix": record.get("prefix"), "label": record.get("label"),
             "state": token_state(record), "created_on": record.get("created_on"),
             "created_by": record.get("created_by"), "expires_on": record.get("expires_on"),
             "last_used_on": record.get("last_used_on"), "revoked_on": record.get("revoked_on"),
             "admin_token": bool(record.get("bootstrap"))}
    if token is not None:
        shown["token"] = token
    return shown


@blp.route("/users/<username>/tokens/")
class Tokens(MethodView):
    @blp.arguments(TokenListArgsSchema, location="query", error_status_code=400)
    @blp.response(200, TokenInfoOut(many=True))
    @errors(blp, 400, 401, 403, 404)
    def get(self, args: dict[str, Any], username: str) -> Response:
        """A user's API tokens, newest first, never their values (the user themself or an
        administrator); revoked ones with `includeRevoked=true`."""
        records = domain().accounts.list_tokens(current_caller(), username,
                                                args["includeRevoked"])
        return list_response(args, lambda skip, limit: (records[skip:skip + limit],
                                                        len(records)), render_token)

    @blp.arguments(TokenIn, required=False)
    @blp.response(201, TokenOut)
    @errors(blp, 401, 403, 404, 409, 422)
    def post(self, payload: dict[str, Any], username: str) -> Response:
        """Issue an API token for a user (the user themself or an administrator): drawn by the
        server, or 32+ characters of the caller's; it expires if asked. Its value is in this
        answer only."""
        token, record = domain().accounts.issue_token(
            current_caller(), username, token=payload.get("token"), label=payload.get("label"),
            expires_on=token_expiry(payload.get("expires_on"), payload.get("expires_in_days")))
        shown = render_token(record, token)
        return json_response(shown, 201, {"Location": shown["url"]})


@blp.route("/users/<username>/tokens/<token_id>/")
class Token(MethodView):
    @blp.response(200, TokenInfoOut)
    @errors(blp, 401, 403, 404)
    def get(self, username: str, token_id: str) -> Response:
        """One of a user's API tokens (never its value)."""
        return json_response(render_token(domain().accounts.get_token(
            current_caller(), username, token_id)))

    @blp.response(204)
    @errors(blp, 401, 403, 404)
    def delete(self, username: str, token_id: str) -> Response:
        """Revoke a token: the next request with it is a 401, and console sessions signed in
        with it end; exports and imports it started keep running. Revoking twice is once."""
        domain().accounts.revoke_token(current_caller(), username, token_id)
        return Response(status=204)


@blp.route("/users/<username>/reactivate/")
class Reactivate(MethodView):
    @blp.response(204)
    @errors(blp, 401, 403, 404)
    def put(self, username: str) -> Response:
        """Reactivate a deactivated user (administrators only; as OCL): their tokens work
        again, those revoked or expired meanwhile excepted."""
        domain().accounts.set_active(current_caller(), username, True)
        return Response(status=204)
