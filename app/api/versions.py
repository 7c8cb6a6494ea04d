"""Source versions: list (newest first), cut from HEAD, read (with content), update, delete."""

from __future__ import annotations

from typing import Any

from flask import Response
from flask.views import MethodView

from .. import model
from ..domain import ocl
from ..domain.payloads import VersionSchema, VersionUpdateSchema
from ..model import Source
from .common import (
    current_caller,
    domain,
    json_response,
    list_response,
    owner_routes,
    resolve_source,
)
from .docs import errors
from .parsing import Blueprint
from .schemas import DiffArgsSchema, SourceContentOut, VersionListArgsSchema, VersionOut
from .sources import content_response

blp = Blueprint("versions", __name__, description="Immutable released versions of a source.")


def _render(source: Source, version: model.Version, with_checksum: bool = True) -> dict[str, Any]:
    content = domain().content
    if version.is_head:
        return ocl.render_source(source, content.checksum(source, version) if with_checksum else None)
    return ocl.render_version(version, source,
                              content.checksum(source, version) if with_checksum else None)


def _update_version(changes: dict[str, Any], source_id: str, version_id: str,
                    owner_kind: str | None, owner_id: str | None) -> Response:
    _, source = resolve_source(owner_kind, owner_id, source_id)
    content = domain().content
    version = content.get_version(source, version_id)
    return json_response(_render(source, content.update_version(current_caller(), source,
                                                                version, changes)))


@owner_routes(blp, "sources/<source_id>/versions/", "versions")
class Versions(MethodView):
    @blp.arguments(VersionListArgsSchema, location="query", error_status_code=400)
    @blp.response(200, VersionOut(many=True))
    @errors(blp, 400, 401, 404)
    def get(self, args: dict[str, Any], source_id: str, owner_kind: str | None = None,
            owner_id: str | None = None) -> Response:
        """List versions, newest first; `released=true&limit=1` is the latest release."""
        _, source = resolve_source(owner_kind, owner_id, source_id)
        return list_response(args, lambda skip, limit: domain().content.list_versions(
            source, args["released"], skip, limit, args["updatedSince"]),
            lambda version: _render(source, version))

    @blp.arguments(VersionSchema)
    @blp.response(201, VersionOut)
    @errors(blp, 401, 403, 404, 409, 422)
    def post(self, payload: dict[str, Any], source_id: str, owner_kind: str | None = None,
             owner_id: str | None = None) -> Response:
        """Cut a version from HEAD (constant time: nothing is copied)."""
        _, source = resolve_source(owner_kind, owner_id, source_id)
        version = domain().content.create_version(current_caller(), source, payload)
        return json_response(_render(source, version), 201, {"Location": version.url})


@owner_routes(blp, "sources/<source_id>/<version_id>/", "version")
class Version(MethodView):
    @blp.arguments(DiffArgsSchema, location="query", error_status_code=400)
    @blp.response(200, SourceContentOut)
    @errors(blp, 400, 401, 404)
    def get(self, args: dict[str, Any], source_id: str, version_id: str,
            owner_kind: str | None = None, owner_id: str | None = None) -> Response:
        """A version ('latest' = newest released); with include flags, its content or a diff."""
        _, source = resolve_source(owner_kind, owner_id, source_id)
        version = domain().content.get_version(source, version_id)
        paging = args["includeConcepts"] or args["includeMappings"]
        body = _render(source, version, with_checksum=not (paging and version.is_head))
        return content_response(source, version, args, body)

    @blp.arguments(VersionUpdateSchema)
    @blp.response(200, VersionOut)
    @errors(blp, 401, 403, 404, 405, 422)
    def put(self, changes: dict[str, Any], source_id: str, version_id: str,
            owner_kind: str | None = None, owner_id: str | None = None) -> Response:
        """Change a version's description, released or retired flag."""
        return _update_version(changes, source_id, version_id, owner_kind, owner_id)

    @blp.arguments(VersionUpdateSchema)
    @blp.response(200, VersionOut)
    @errors(blp, 401, 403, 404, 405, 422)
    def patch(self, changes: dict[str, Any], source_id: str, version_id: str,
              owner_kind: str | None = None, owner_id: str | None = None) -> Response:
        """Change some of a version's metadata."""
        return _update_version(changes, source_id, version_id, owner_kind, owner_id)

    @blp.response(204)
    @errors(blp, 401, 403, 404, 405)
    def delete(self, source_id: str, version_id: str, owner_kind: str | None = None,
               owner_id: str | None = None) -> Response:
        """Delete a version and its exports."""
        _, source = resolve_source(owner_kind, owner_id, source_id)
        content = domain().content
        content.delete_version(current_caller(), source, content.get_version(source, version_id))
        return Response(status=204)
