"""Sources: list, create, read (with content and diffs), update, delete."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from flask import Response, request
from flask.views import MethodView

from .. import timeutil
from ..domain import ocl
from ..domain.accounts import ORG, USER, Owner
from ..domain.payloads import SourceSchema, SourceUpdateSchema
from ..model import CONCEPT, MAPPING, SOURCE_TYPE, RepoFilters, Version
from ..model import Source as Repository
from .common import (
    complete_up_to,
    current_caller,
    date_header,
    decode_cursor,
    domain,
    encode_cursor,
    json_object_stream,
    json_response,
    list_response,
    owner_routes,
    page_url,
    paging_headers,
    resolve_owner,
    resolve_source,
    zip_stream,
)
from .docs import errors
from .parsing import Blueprint
from .schemas import DiffArgsSchema, RepoListArgsSchema, SourceContentOut, SourceOut

blp = Blueprint("sources", __name__, description="Sources and their content (HEAD).")


def content_response(source: Repository, version: Version, args: dict[str, Any],
                     body: dict[str, Any]) -> Response:
    """`body` plus a keyset page of concepts/mappings when asked (the diff protocol).

    `Date` says up to when the answer is complete (docs/api.md, The Date header): the moment
    the query read the data, or, when more items matched than were sent, the second the rest
    begins at (a first page leaves that second out whole), because the OpenMRS module sends it
    back as its next `updatedSince`.
    """
    content = domain().content
    if args.get("includeSummary"):
        body = dict(body, summary=content.summary(source, version))
    types = [kind for flag, kind in (("includeConcepts", CONCEPT), ("includeMappings", MAPPING))
             if args[flag]]
    if not types:
        return json_response(body)
    since = args.get("updatedSince")
    cursor = decode_cursor(args["cursor"]) if args.get("cursor") else None
    read_at = timeutil.now()
    page = content.diff_page(source, version, types, args["includeRetired"], since, cursor,
                             args["limit"], include_deleted=args["includeDeleted"])
    next_url = page_url(cursor=encode_cursor(page.next_cursor)) if page.next_cursor else None
    headers = paging_headers(page.num_found, page.returned, next_url)
    headers.update(date_header(complete_up_to(read_at, page.unsent_from)))
    render = content.renderer(source)  # a collection's items are rendered with their sources
    parts = json_object_stream(body, [
        (key, (render(item) for item in page.items(kind)))
        for key, kind in (("concepts", CONCEPT), ("mappings", MAPPING))])
    if request.headers.get("Compress", "").lower() == "true":
        headers["Content-Disposition"] = \
            f'attachment; filename="{source.id}_{version.id}.zip"'
        return Response(zip_stream(parts), headers=headers, mimetype="application/zip")
    return Response(parts, headers=headers, mimetype="application/json")


def _update_source(changes: dict[str, Any], source_id: str, owner_kind: str | None,
                   owner_id: str | None) -> Response:
    _, source = resolve_source(owner_kind, owner_id, source_id)
    updated = domain().content.update_source(current_caller(), source, changes)
    return json_response(ocl.render_source(updated))


def repo_filters(args: dict[str, Any]) -> RepoFilters:
    """OCL's repository-list parameters as the domain's filters (400 for a bad time)."""
    owner_type = args.get("ownerType")
    if owner_type:
        owner_type = {"orgs": ORG, "org": ORG, "organization": ORG, "users": USER,
                      "user": USER}.get(owner_type.lower(), owner_type)
    return RepoFilters(q=args.get("q"), owner=args.get("owner"), owner_type=owner_type,
                       repo_type=args.get("repoType"),
                       custom_validation_schema=args.get("customValidationSchema"),
                       updated_since=args.get("updatedSince"))


def list_repos(args: dict[str, Any], owner: Owner | None, kind: str | None = None) -> Response:
    """A page of the repositories the caller may see: of one kind, or as `repoType` says."""
    caller = current_caller()
    filters = repo_filters(args)
    if kind is not None:
        filters = replace(filters, repo_type=kind)
    return list_response(args, lambda skip, limit: domain().content.list_repos(
        caller, owner, filters, skip, limit), ocl.render_source)


@blp.route("/sources/")
class AllSources(MethodView):
    @blp.arguments(RepoListArgsSchema, location="query", error_status_code=400)
    @blp.response(200, SourceOut(many=True))
    @errors(blp, 400, 401)
    def get(self, args: dict[str, Any]) -> Response:
        """List every source the caller may see (`q`, `owner`, `ownerType`, ... narrow it)."""
        return list_repos(args, None, SOURCE_TYPE)


@owner_routes(blp, "sources/", "owner_sources")
class OwnerSources(MethodView):
    @blp.arguments(RepoListArgsSchema, location="query", error_status_code=400)
    @blp.response(200, SourceOut(many=True))
    @errors(blp, 400, 401, 404)
    def get(self, args: dict[str, Any], owner_kind: str | None = None,
            owner_id: str | None = None) -> Response:
        """List an owner's sources."""
        return list_repos(args, resolve_owner(owner_kind, owner_id), SOURCE_TYPE)

    @blp.arguments(SourceSchema)
    @blp.response(201, SourceOut)
    @errors(blp, 401, 403, 404, 409, 422)
    def post(self, payload: dict[str, Any], owner_kind: str | None = None,
             owner_id: str | None = None) -> Response:
        """Create a source (members of the owner only)."""
        owner = resolve_owner(owner_kind, owner_id)
        source = domain().content.create_source(current_caller(), owner, payload)
        return json_response(ocl.render_source(source), 201,
                             {"Location": source.url})


@owner_routes(blp, "sources/<source_id>/", "source")
class Source(MethodView):
    @blp.arguments(DiffArgsSchema, location="query", error_status_code=400)
    @blp.response(200, SourceContentOut)
    @errors(blp, 400, 401, 404)
    def get(self, args: dict[str, Any], source_id: str, owner_kind: str | None = None,
            owner_id: str | None = None) -> Response:
        """A source or collection (HEAD); with includeConcepts/includeMappings, a page of its
        content or diff."""
        _, source = resolve_source(owner_kind, owner_id, source_id)
        content = domain().content
        head = content.head_version(source)
        checksum = None if args["includeConcepts"] or args["includeMappings"] \
            else content.checksum(source, head)
        return content_response(source, head, args, ocl.render_source(source, checksum))

    @blp.arguments(SourceUpdateSchema)
    @blp.response(200, SourceOut)
    @errors(blp, 400, 401, 403, 404, 422)
    def put(self, changes: dict[str, Any], source_id: str, owner_kind: str | None = None,
            owner_id: str | None = None) -> Response:
        """Change a source's (or collection's) metadata."""
        return _update_source(changes, source_id, owner_kind, owner_id)

    @blp.arguments(SourceUpdateSchema)
    @blp.response(200, SourceOut)
    @errors(blp, 400, 401, 403, 404, 422)
    def patch(self, changes: dict[str, Any], source_id: str, owner_kind: str | None = None,
              owner_id: str | None = None) -> Response:
        """Change some of a source's (or collection's) metadata."""
        return _update_source(changes, source_id, owner_kind, owner_id)

    @blp.response(204)
    @errors(blp, 401, 403, 404, 409)
    def delete(self, source_id: str, owner_kind: str | None = None,
               owner_id: str | None = None) -> Response:
        """Delete a source with all its versions, items and exports (409 while a collection
        holds its items), or a collection with its versions, references and exports."""
        _, source = resolve_source(owner_kind, owner_id, source_id)
        domain().content.delete_source(current_caller(), source)
        return Response(status=204)
