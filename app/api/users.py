"""Users: the caller (/user/), accounts (admins create them) and API tokens."""

from __future__ import annotations

from typing import Any

from flask import Response
from flask.views import MethodView
from flask_smorest import Blueprint

from ..domain.accounts import require_login
from ..domain.errors import Forbidden
from ..domain.payloads import UserSchema
from .common import current_caller, domain, json_response, list_response, render_user
from .docs import errors
from .orgs import render_org
from .schemas import ListArgsSchema, OrgOut, SearchListArgsSchema, TokenIn, TokenOut, UserOut

blp = Blueprint("users", __name__, description="User accounts and API tokens.")


def _require_admin() -> None:
    caller = current_caller()
    require_login(caller)
    if not caller.is_admin:
        raise Forbidden("Only administrators may do this.")


@blp.route("/users/")
class Users(MethodView):
    @blp.arguments(SearchListArgsSchema, location="query", error_status_code=400)
    @blp.response(200, UserOut(many=True))
    @errors(blp, 400, 401, 403)
    def get(self, args: dict[str, Any]) -> Response:
        """List users (administrators only; `q`: text in the username or name)."""
        _require_admin()
        return list_response(args, lambda skip, limit: domain().repos.users.search(
            args["q"], skip, limit), render_user)

    @blp.arguments(UserSchema)
    @blp.response(201, UserOut)
    @errors(blp, 401, 403, 409, 422)
    def post(self, payload: dict[str, Any]) -> Response:
        """Create a user (administrators only)."""
        _require_admin()
        user = domain().accounts.create_user(
            payload["username"], name=payload.get("name"), email=payload.get("email"),
            company=payload.get("company"), is_admin=payload.get("is_admin", False))
        return json_response(render_user(user), 201, {"Location": f"/users/{user['_id']}/"})


@blp.route("/users/<username>/")
class User(MethodView):
    @blp.response(200, UserOut)
    @errors(blp, 401, 404)
    def get(self, username: str) -> Response:
        """One user."""
        current_caller()
        return json_response(render_user(domain().accounts.get_user(username)))


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


@blp.route("/users/<username>/tokens/")
class Tokens(MethodView):
    @blp.arguments(TokenIn, required=False)
    @blp.response(201, TokenOut)
    @errors(blp, 401, 403, 404, 422)
    def post(self, payload: dict[str, Any], username: str) -> Response:
        """Issue an API token for a user (the user themself or an administrator)."""
        caller = current_caller()
        require_login(caller)
        if caller.username != username and not caller.is_admin:
            raise Forbidden("You may only issue tokens for yourself.")
        token = domain().accounts.create_token(username, payload.get("token"))
        return json_response({"username": username, "token": token}, 201)
