"""Repositories as OCL lists them: `/repos/` and an owner's `repos/` (termsync's are sources)."""

from __future__ import annotations

from typing import Any

from flask import Response
from flask.views import MethodView

from .common import owner_routes, resolve_owner
from .docs import errors
from .parsing import Blueprint
from .schemas import RepoListArgsSchema, SourceOut
from .sources import list_repos

blp = Blueprint("repos", __name__, description=(
    "Repositories (sources and collections) as OCL's clients list them; termsync has sources."))


@blp.route("/repos/")
class AllRepos(MethodView):
    @blp.arguments(RepoListArgsSchema, location="query", error_status_code=400)
    @blp.response(200, SourceOut(many=True))
    @errors(blp, 400, 401)
    def get(self, args: dict[str, Any]) -> Response:
        """Every repository the caller may see (`q`, `owner`, `ownerType`, `repoType`, ...)."""
        return list_repos(args, None)


@owner_routes(blp, "repos/", "owner_repos")
class OwnerRepos(MethodView):
    @blp.arguments(RepoListArgsSchema, location="query", error_status_code=400)
    @blp.response(200, SourceOut(many=True))
    @errors(blp, 400, 401, 404)
    def get(self, args: dict[str, Any], owner_kind: str | None = None,
            owner_id: str | None = None) -> Response:
        """An owner's repositories."""
        return list_repos(args, resolve_owner(owner_kind, owner_id))
