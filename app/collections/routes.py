"""Collections: list and create them, and their references (add, list, remove).

Everything else about a collection (read, change, delete it; its versions, content, diffs,
concepts and mappings, exports) is served by the routes of sources, which take
`collections/{id}/` as well as `sources/{id}/` (app.api.common.owner_routes).
"""

from __future__ import annotations

from typing import Any

from flask import Response
from flask.views import MethodView

from ..api.common import (
    current_caller,
    domain,
    json_response,
    list_response,
    owner_routes,
    resolve_owner,
)
from ..api.docs import errors
from ..api.parsing import Blueprint
from ..api.schemas import RepoListArgsSchema
from ..api.sources import list_repos
from ..domain import ocl
from ..domain.accounts import Owner
from ..domain.collections import check_cascade
from ..domain.payloads import CollectionSchema
from ..model import COLLECTION_TYPE, Source, Version
from .schemas import (
    CascadeArgsSchema,
    CollectionOut,
    ReferenceListArgsSchema,
    ReferenceOut,
    ReferenceResultOut,
    ReferencesDeleteSchema,
    ReferencesPutSchema,
)

blp = Blueprint("collections", __name__, description=(
    "Collections: references to concepts and mappings of any source, versioned, exported and "
    "subscribed to as sources are (their content, versions and exports are under the source "
    "routes with `collections/` in place of `sources/`)."))


def resolve_collection(owner_kind: str | None, owner_id: str | None,
                       collection_id: str) -> tuple[Owner, Source]:
    """The owner and collection named by the URL (404 if unknown or hidden)."""
    owner = resolve_owner(owner_kind, owner_id)
    return owner, domain().content.get_source(current_caller(), owner, collection_id,
                                              COLLECTION_TYPE)


@blp.route("/collections/")
class AllCollections(MethodView):
    @blp.arguments(RepoListArgsSchema, location="query", error_status_code=400)
    @blp.response(200, CollectionOut(many=True))
    @errors(blp, 400, 401)
    def get(self, args: dict[str, Any]) -> Response:
        """List every collection the caller may see (`q`, `owner`, `ownerType`, ... narrow it)."""
        return list_repos(args, None, COLLECTION_TYPE)


@owner_routes(blp, "collections/", "owner_collections")
class OwnerCollections(MethodView):
    @blp.arguments(RepoListArgsSchema, location="query", error_status_code=400)
    @blp.response(200, CollectionOut(many=True))
    @errors(blp, 400, 401, 404)
    def get(self, args: dict[str, Any], owner_kind: str | None = None,
            owner_id: str | None = None) -> Response:
        """List an owner's collections."""
        return list_repos(args, resolve_owner(owner_kind, owner_id), COLLECTION_TYPE)

    @blp.arguments(CollectionSchema)
    @blp.response(201, CollectionOut)
    @errors(blp, 401, 403, 404, 409, 422)
    def post(self, payload: dict[str, Any], owner_kind: str | None = None,
             owner_id: str | None = None) -> Response:
        """Create a collection (members of the owner only)."""
        owner = resolve_owner(owner_kind, owner_id)
        collection = domain().content.create_collection(current_caller(), owner, payload)
        return json_response(ocl.render_source(collection), 201, {"Location": collection.url})


def _list(args: dict[str, Any], collection: Source, version: Version) -> Response:
    collections = domain().collections
    return list_response(args, lambda skip, limit: collections.references(
        collection, version, args.get("q"), skip, limit), ocl.render_reference)


@owner_routes(blp, "collections/<collection_id>/references/", "references")
class References(MethodView):
    @blp.arguments(ReferenceListArgsSchema, location="query", error_status_code=400)
    @blp.response(200, ReferenceOut(many=True))
    @errors(blp, 400, 401, 404)
    def get(self, args: dict[str, Any], collection_id: str, owner_kind: str | None = None,
            owner_id: str | None = None) -> Response:
        """List the collection's references (HEAD), by expression (`q`: text in one)."""
        _, collection = resolve_collection(owner_kind, owner_id, collection_id)
        return _list(args, collection, domain().content.head_version(collection))

    @blp.arguments(CascadeArgsSchema, location="query", error_status_code=400)
    @blp.arguments(ReferencesPutSchema)
    @blp.response(200, ReferenceResultOut(many=True))
    @errors(blp, 400, 401, 403, 404, 422)
    def put(self, args: dict[str, Any], payload: dict[str, Any], collection_id: str,
            owner_kind: str | None = None, owner_id: str | None = None) -> Response:
        """Add references: one result per expression (and per expression a cascade added):
        added, exists, not_found, not_allowed or invalid."""
        _, collection = resolve_collection(owner_kind, owner_id, collection_id)
        cascade = check_cascade(args.get("cascade") or payload.get("cascade"))
        results = domain().collections.add_references(
            current_caller(), collection, payload["data"]["expressions"], cascade)
        return json_response([result.as_dict() for result in results])

    @blp.arguments(CascadeArgsSchema, location="query", error_status_code=400)
    @blp.arguments(ReferencesDeleteSchema)
    @blp.response(204)
    @errors(blp, 400, 401, 403, 404, 422)
    def delete(self, args: dict[str, Any], payload: dict[str, Any], collection_id: str,
               owner_kind: str | None = None, owner_id: str | None = None) -> Response:
        """Remove references by expression (`cascade=sourcemappings`: also the collection's
        mappings from the concepts removed); an item stays while another reference brings it."""
        _, collection = resolve_collection(owner_kind, owner_id, collection_id)
        cascade = check_cascade(args.get("cascade"))
        expressions = (payload.get("references") or []) + (payload.get("expressions") or [])
        domain().collections.remove_references(current_caller(), collection, expressions,
                                               cascade)
        return Response(status=204)


@owner_routes(blp, "collections/<collection_id>/<version_id>/references/", "version_references")
class VersionReferences(MethodView):
    @blp.arguments(ReferenceListArgsSchema, location="query", error_status_code=400)
    @blp.response(200, ReferenceOut(many=True))
    @errors(blp, 400, 401, 404)
    def get(self, args: dict[str, Any], collection_id: str, version_id: str,
            owner_kind: str | None = None, owner_id: str | None = None) -> Response:
        """List a collection version's references, by expression."""
        _, collection = resolve_collection(owner_kind, owner_id, collection_id)
        version = domain().content.get_version(collection, version_id)
        return _list(args, collection, version)
