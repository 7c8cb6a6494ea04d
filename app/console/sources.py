"""Organizations, sources and collections, and a repository's page: counts, checksum, changes
since the last release (sources) or references (collections), versions with their export state,
and the actions of those with edit rights (cut and release a version, build or delete an export),
plus the download of a ready export. A collection's page is a source's page: the same routes
under `collections/`, on the same services."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from flask import Blueprint, Response, jsonify, redirect, request, url_for
from marshmallow import ValidationError
from werkzeug.wsgi import wrap_file

from ..domain.accounts import ORG, Owner
from ..domain.content import is_collection
from ..domain.errors import Invalid, NotAllowed, NotFound
from ..domain.loader import flatten_errors
from ..domain.payloads import VersionSchema
from ..exports.service import BUILDING, FAILED, NONE, PENDING, READY, ExportService, ExportStatus
from ..model import COLLECTION_TYPE, SOURCE_TYPE, Source, Version
from ..timeutil import FORMAT
from .web import (
    Answer,
    caller,
    domain,
    page_number,
    pager,
    render,
    require_sign_in,
    services,
    source_args,
    text_arg,
    visitor,
)

logger = logging.getLogger(__name__)

bp = Blueprint("sources", __name__)

SOURCE = "/<any(orgs,users):owner_kind>/<owner_id>/<any(sources,collections):repo_path>/<source_id>"
REPO_KINDS = {"sources": SOURCE_TYPE, "collections": COLLECTION_TYPE}
REFERENCES_PER_PAGE = 20
VERSIONS_PER_PAGE = 20
READ_BLOCK = 1024 * 1024
EXPORT_LABELS = {READY: "ready", PENDING: "queued", BUILDING: "building", FAILED: "failed",
                 NONE: "none"}
NOTICES = {"cut": "Version {version} was cut.",
           "released": "Version {version} was released; its export is queued.",
           "build": "The export of {version} is queued.",
           "deleted": "The export of {version} was deleted."}


def export_service() -> ExportService:
    """The export service of the running app."""
    from ..exports import export_service as service
    return service()


def resolve_source(owner_kind: str, owner_id: str, repo_path: str,
                   source_id: str) -> tuple[Owner, Source]:
    """The owner and the source or collection a console URL names, for this caller (404 if
    hidden, as the API)."""
    who = caller()
    owner = domain().accounts.resolve_owner(who, owner_kind, owner_id)
    return owner, domain().content.get_source(who, owner, source_id, REPO_KINDS[repo_path])


def resolve_version(source: Source, version_id: str) -> Version:
    """A version that can have an export (HEAD cannot)."""
    version = domain().content.get_version(source, version_id)
    if version.is_head:
        raise NotAllowed("HEAD has no export; cut a version and export that.")
    return version


@dataclass(frozen=True)
class VersionRow:
    """A version and its export's state, as the source page lists them."""

    version: Version
    export: ExportStatus

    @property
    def label(self) -> str:
        """The export's state in words (ready, queued, building, failed, none)."""
        return EXPORT_LABELS.get(self.export.state, self.export.state.lower())

    @property
    def active(self) -> bool:
        """Whether a build is queued or running (the page follows its progress)."""
        return self.export.state in (PENDING, BUILDING)

    @property
    def progress(self) -> dict[str, Any]:
        """The export's progress as the page's script reads it."""
        return export_progress_of(self.export)


def export_progress_of(status: ExportStatus) -> dict[str, Any]:
    """What the page's script needs to show an export's progress (percent of items written)."""
    return {"state": status.state, "label": EXPORT_LABELS.get(status.state, status.state.lower()),
            "detail": f"{status.progress}% written" if status.state == BUILDING else "",
            "value": status.progress, "max": 100,
            "final": status.state not in (PENDING, BUILDING)}


# --- lists ----------------------------------------------------------------------------------

@bp.route("/orgs/")
def orgs() -> Answer:
    """Organizations the visitor may see, searchable by id and name."""
    query = text_arg("q")
    page, limit = page_number(), services().settings.page_size
    found, total = domain().browse.search_orgs(caller(), query, (page - 1) * limit, limit)
    return render("console/orgs.html", orgs=found, q=query, pager=pager(page, limit, total))


def _repos(owner: Owner | None, repo_path: str, **context: Any) -> Answer:
    """A page of the sources or collections the visitor may see (of one owner, or all),
    searchable by id, name and full name."""
    query = text_arg("q")
    page, limit = page_number(), services().settings.page_size
    found, total = domain().browse.search_sources(caller(), owner, query, (page - 1) * limit,
                                                  limit, REPO_KINDS[repo_path])
    return render("console/sources.html", sources=found, q=query, owner=owner,
                  repo_path=repo_path, pager=pager(page, limit, total), **context)


@bp.route("/sources/")
def sources() -> Answer:
    """Sources the visitor may see."""
    return _repos(None, "sources")


@bp.route("/collections/")
def collections() -> Answer:
    """Collections the visitor may see."""
    return _repos(None, "collections")


@bp.route("/<any(orgs,users):owner_kind>/<owner_id>/", defaults={"repo_path": "sources"})
@bp.route("/<any(orgs,users):owner_kind>/<owner_id>/<any(sources,collections):repo_path>/")
def owner(owner_kind: str, owner_id: str, repo_path: str) -> Answer:
    """An organization (or user) and its sources (or collections)."""
    who = caller()
    accounts = domain().accounts
    found_owner = accounts.resolve_owner(who, owner_kind, owner_id)
    org = accounts.get_org(who, owner_id) if found_owner.kind == ORG else None
    return _repos(found_owner, repo_path, org=org)


# --- a source -------------------------------------------------------------------------------

@bp.route(f"{SOURCE}/")
def source(owner_kind: str, owner_id: str, repo_path: str, source_id: str) -> Answer:
    """A source (a collection): counts, checksum, changes since the last release (its
    references, searchable by text), versions and exports."""
    found_owner, found = resolve_source(owner_kind, owner_id, repo_path, source_id)
    content, browse = domain().content, domain().browse
    summary = browse.source_summary(found)
    changes = references = None
    if is_collection(found):
        query = text_arg("references_q")
        ref_page = page_number("references_page")
        found_references, ref_total = domain().collections.references(
            found, content.head_version(found), query, (ref_page - 1) * REFERENCES_PER_PAGE,
            REFERENCES_PER_PAGE)
        references = {"items": found_references, "q": query,
                      "pager": pager(ref_page, REFERENCES_PER_PAGE, ref_total,
                                     name="references_page")}
    else:
        changes = browse.changes_since_release(found, summary)
    page = page_number("versions_page")
    versions, total = content.list_versions(found, None, (page - 1) * VERSIONS_PER_PAGE,
                                            VERSIONS_PER_PAGE)
    exports = export_service()
    rows = [VersionRow(version, exports.status(found, version)) for version in versions]
    notice = NOTICES.get(request.args.get("notice", ""))
    from ..webhooks import webhook_service
    hooks = webhook_service()
    manages_hooks = visitor().signed_in and hooks.may_manage(caller(), found)
    return render("console/source.html", source=found, owner=found_owner, summary=summary,
                  manages_hooks=manages_hooks,
                  hooks_off=hooks.switched_off(found) if manages_hooks else [],
                  changes=changes, references=references, versions=rows,
                  pager=pager(page, VERSIONS_PER_PAGE, total, name="versions_page"),
                  can_edit=domain().accounts.can_edit(caller(), found),
                  notice=notice.format(version=request.args.get("version", "")) if notice else None,
                  refresh=any(row.active for row in rows))


def _back(source: Source, notice: str, version_id: str) -> Answer:
    arguments: dict[str, Any] = dict(source_args(source), notice=notice, version=version_id)
    return redirect(url_for("console.sources.source", **arguments), 303)


@bp.route(f"{SOURCE}/versions/", methods=["POST"])
def cut_version(owner_kind: str, owner_id: str, repo_path: str, source_id: str) -> Answer:
    """Cut a version from HEAD (released at once if asked: that queues its export)."""
    who = require_sign_in()
    _, found = resolve_source(owner_kind, owner_id, repo_path, source_id)
    form = request.form
    try:
        payload = VersionSchema().load({"id": form.get("id", "").strip(),
                                        "description": form.get("description") or None,
                                        "released": form.get("released") == "on"})
    except ValidationError as error:
        raise Invalid("The version was not cut: " + "; ".join(flatten_errors(error.messages)),
                      errors=error.normalized_messages()) from None
    version = domain().content.create_version(who, found, payload)
    return _back(found, "released" if version.released else "cut", version.id)


@bp.route(f"{SOURCE}/versions/<version_id>/release", methods=["POST"])
def release(owner_kind: str, owner_id: str, repo_path: str, source_id: str,
            version_id: str) -> Answer:
    """Mark a version released (which queues its export)."""
    who = require_sign_in()
    _, found = resolve_source(owner_kind, owner_id, repo_path, source_id)
    version = resolve_version(found, version_id)
    domain().content.update_version(who, found, version, {"released": True})
    return _back(found, "released", version.id)


@bp.route(f"{SOURCE}/versions/<version_id>/export/build", methods=["POST"])
def build_export(owner_kind: str, owner_id: str, repo_path: str, source_id: str,
                 version_id: str) -> Answer:
    """Queue a build (or a rebuild) of a version's export: edit rights, as POST ?force=true."""
    who = require_sign_in()
    _, found = resolve_source(owner_kind, owner_id, repo_path, source_id)
    domain().accounts.require_edit(who, found)
    version = resolve_version(found, version_id)
    export_service().request(found, version, rebuild=True)
    return _back(found, "build", version.id)


@bp.route(f"{SOURCE}/versions/<version_id>/export/delete", methods=["POST"])
def delete_export(owner_kind: str, owner_id: str, repo_path: str, source_id: str,
                  version_id: str) -> Answer:
    """Delete a version's export file, or cancel its build."""
    who = require_sign_in()
    _, found = resolve_source(owner_kind, owner_id, repo_path, source_id)
    domain().accounts.require_edit(who, found)
    version = resolve_version(found, version_id)
    if not export_service().delete(found, version):
        raise NotFound(f"Version '{version.id}' of '{found.id}' has no export.")
    return _back(found, "deleted", version.id)


@bp.route(f"{SOURCE}/versions/<version_id>/export.json")
def export_progress(owner_kind: str, owner_id: str, repo_path: str, source_id: str,
                    version_id: str) -> Answer:
    """The state of a version's export, for the page's progress bar."""
    _, found = resolve_source(owner_kind, owner_id, repo_path, source_id)
    return jsonify(export_progress_of(export_service().status(
        found, resolve_version(found, version_id))))


@bp.route(f"{SOURCE}/versions/<version_id>/export.zip")
def download_export(owner_kind: str, owner_id: str, repo_path: str, source_id: str,
                    version_id: str) -> Answer:
    """The ready export file of a version (view rights, as GET .../export/), with its ETag."""
    _, found = resolve_source(owner_kind, owner_id, repo_path, source_id)
    version = resolve_version(found, version_id)
    service = export_service()
    status = service.status(found, version)
    if status.state != READY or status.file is None:
        raise NotFound(f"The export of {version.id} is not ready "
                       f"({EXPORT_LABELS.get(status.state, status.state)}).")
    file = status.file
    try:
        handle = service.storage.open(file.sha256)
    except FileNotFoundError:
        service.file_lost(found, version, file.sha256)
        raise NotFound("The export file is missing from storage; a rebuild is queued.") from None
    stamp = datetime.strptime(file.last_updated or file.created_on, FORMAT)
    name = f"{found.owner}_{found.id}_{version.id}.{stamp:%Y%m%d%H%M%S}.zip"
    response = Response(wrap_file(request.environ, handle, READ_BLOCK), mimetype="application/zip",
                        direct_passthrough=True, headers={
                            "ETag": f'"{file.sha256}"',
                            "Content-Disposition": f'attachment; filename="{name}"',
                            "Cache-Control": "private, no-cache"})
    response.headers["Content-Length"] = str(file.size)
    return response

