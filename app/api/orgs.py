"""Organizations: list, create, read, and membership (list, check, add, remove)."""

from __future__ import annotations

from typing import Any

from flask import Response
from flask.views import MethodView
from flask_smorest import Blueprint

from ..domain import ocl
from ..domain.accounts import Owner
from ..domain.errors import NotFound
from ..domain.payloads import OrganizationSchema
from .common import current_caller, domain, json_response, list_response, render_user
from .docs import errors
from .schemas import ListArgsSchema, OrgOut, SearchListArgsSchema, UserOut

blp = Blueprint("orgs", __name__, description="Organizations that own sources.")


def render_org(org: dict[str, Any]) -> dict[str, Any]:
    """An organization with OCL's counts (members, public sources)."""
    return ocl.render_org(org, domain().accounts.org_counts(org))


@blp.route("/orgs/")
class Orgs(MethodView):
    @blp.arguments(SearchListArgsSchema, location="query", error_status_code=400)
    @blp.response(200, OrgOut(many=True))
    @errors(blp, 400, 401)
    def get(self, args: dict[str, Any]) -> Response:
        """List the organizations the caller may see (`q`: text in the id or name)."""
        caller = current_caller()
        return list_response(args, lambda skip, limit: domain().accounts.list_orgs(
            caller, skip, limit, args["q"]), render_org)

    @blp.arguments(OrganizationSchema)
    @blp.response(201, OrgOut)
    @errors(blp, 401, 409, 422)
    def post(self, payload: dict[str, Any]) -> Response:
        """Create an organization; the caller becomes its first member."""
        org = domain().accounts.create_org(current_caller(), payload)
        return json_response(render_org(org), 201, {"Location": f"/orgs/{org['_id']}/"})


@blp.route("/orgs/<org_id>/")
class Org(MethodView):
    @blp.response(200, OrgOut)
    @errors(blp, 401, 404)
    def get(self, org_id: str) -> Response:
        """One organization."""
        return json_response(render_org(domain().accounts.get_org(current_caller(), org_id)))


@blp.route("/orgs/<org_id>/members/")
class Members(MethodView):
    @blp.arguments(ListArgsSchema, location="query", error_status_code=400)
    @blp.response(200, UserOut(many=True))
    @errors(blp, 400, 401, 404)
    def get(self, args: dict[str, Any], org_id: str) -> Response:
        """The members of an organization, by username."""
        caller = current_caller()
        return list_response(args, lambda skip, limit: domain().accounts.list_members(
            caller, org_id, skip, limit), lambda user: render_user(user, counts=False))


@blp.route("/orgs/<org_id>/members/<username>/")
class Member(MethodView):
    @blp.response(204)
    @errors(blp, 401, 404)
    def get(self, org_id: str, username: str) -> Response:
        """204 if the user is a member of the organization, else 404 (as OCL answers)."""
        if not domain().accounts.is_member(current_caller(), org_id, username):
            raise NotFound(f"'{username}' is not a member of '{org_id}'.")
        return Response(status=204)

    @blp.response(200, UserOut)
    @errors(blp, 401, 403, 404)
    def put(self, org_id: str, username: str) -> Response:
        """Add a user to an organization (members and admins only); answers the member.

        OCL answers 204 without a body, on which `ocl org add-member` fails reading JSON; the
        client wins (docs/compatibility.md).
        """
        accounts = domain().accounts
        caller = current_caller()
        accounts.get_org(caller, org_id)
        accounts.require_owner(caller, Owner("Organization", org_id))
        accounts.add_member(org_id, username)
        return json_response(render_user(accounts.get_user(username), counts=False))

    @blp.response(204)
    @errors(blp, 401, 403, 404)
    def delete(self, org_id: str, username: str) -> Response:
        """Remove a user from an organization (members and admins only)."""
        domain().accounts.remove_member(current_caller(), org_id, username)
        return Response(status=204)
