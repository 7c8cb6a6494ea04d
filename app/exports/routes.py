"""Exports of source versions: probe (HEAD), download (GET), build (POST), delete (DELETE).

The status table (docs/api.md, Exports) is exact and OCL v2's: 200 ready, 208 queued or
building, 204 none (GET never builds: released versions are kept built, others are POSTed), POST
303 to a ready export (`?force=true` rebuilds). A ready export is served with a strong ETag (its
sha256), conditional requests and single byte ranges; its `exportURL` names the immutable,
content-addressed file, cacheable for a year. Its `Date` is its version's `lastUpdated`, because
the OpenMRS module sends that back as the `updatedSince` of its first snapshot.

`?since={version}` names the version's delta package from that earlier release instead
(`delta.py`): the same table, headers and caching; a `since` that cannot start one is a 400.
"""

from __future__ import annotations

import base64
import re
from http import HTTPStatus
from typing import Any
from urllib.parse import urlencode

from flask import Response, current_app, request
from flask.views import MethodView
from werkzeug.http import http_date, parse_etags
from werkzeug.wsgi import wrap_file

from .. import model
from ..api.common import (
    current_caller,
    date_header,
    domain,
    json_response,
    owner_routes,
    resolve_source,
)
from ..api.docs import errors
from ..api.parsing import Blueprint
from ..config import settings_of
from ..domain.errors import NotAllowed, NotFound
from ..faults import RETRY_AFTER
from ..model import Source
from ..timeutil import to_datetime
from .delta import delta_base
from .schemas import ExportArgsSchema, ExportFailedOut, ExportPostArgsSchema, ExportStateOut
from .service import BUILDING, FAILED, PENDING, READY, ExportStatus, export_service

blp = Blueprint("exports", __name__, description=(
    "Zipped OCL exports of source versions: built in the background, cached, served with "
    "ETag, conditional requests and byte ranges."))

READ_BLOCK = 1024 * 1024
IMMUTABLE = "public, max-age=31536000, immutable"
# At most 18 digits per position: past that int() may refuse (and no file is that big anyway).
RANGE = re.compile(r"^\s*bytes\s*=\s*(\d{0,18})\s*-\s*(\d{0,18})\s*$", re.IGNORECASE)


class FileGone(Exception):
    """An export record names a file its storage no longer has."""


def _export_target(owner_kind: str | None, owner_id: str | None, source_id: str,
                   version_id: str, since: str | None = None,
                   ) -> tuple[Source, model.Version, model.Version | None]:
    """The source and version named by the URL (404 if unknown or hidden, 405 for HEAD) and the
    base of the delta package `since` asks for (400 if it cannot start one), or None."""
    _, source = resolve_source(owner_kind, owner_id, source_id)
    if version_id == "HEAD":
        raise NotAllowed("HEAD has no export; cut a version and export that.")
    version = domain().content.get_version(source, version_id)
    if version.is_head:
        raise NotAllowed("HEAD has no export; cut a version and export that.")
    base = delta_base(domain(), source, version, since) if since is not None else None
    return source, version, base


def _file_url(source: Source, sha256: str) -> str:
    """The absolute, immutable URL of an export file (content-addressed by its sha256)."""
    return f"{request.scheme}://{request.host}{source.url}exports/{sha256}.zip"


def _file_headers(source: Source, version_id: str, file: model.ExportFile,
                  cache_control: str, since_id: str | None = None) -> dict[str, str]:
    """The headers of a ready export, for GET, HEAD, 206 and 304 alike."""
    sha = file.sha256
    created = to_datetime(file.created_on)
    stamp_time = file.last_updated or file.created_on
    stamp = to_datetime(stamp_time).strftime("%Y%m%d%H%M%S")
    versions = version_id if since_id is None else f"{since_id}_to_{version_id}"
    name = f"{source.owner}_{source.id}_{versions}.{stamp}.zip"
    headers = {
        "ETag": f'"{sha}"',
        "Repr-Digest": f"sha-256=:{base64.b64encode(bytes.fromhex(sha)).decode()}:",
        "Last-Modified": http_date(created),
        "Content-Type": "application/zip",
        "Content-Disposition": f'attachment; filename="{name}"',
        "X-Export-Created": file.created_on,
        "exportURL": _file_url(source, sha),
        "Accept-Ranges": "bytes",
        "Cache-Control": cache_control,
    }
    if file.last_updated:
        headers["lastUpdated"] = file.last_updated
        # complete up to its version's lastUpdated (docs/api.md, The Date header)
        headers.update(date_header(to_datetime(file.last_updated)))
    return headers


def _not_modified(sha256: str) -> bool:
    """If-None-Match names this file (weak comparison, as RFC 9110 says for this header)."""
    header = request.headers.get("If-None-Match")
    if not header:
        return False
    etags = parse_etags(header)
    return etags.star_tag or etags.contains_weak(sha256)


def _byte_range(size: int, headers: dict[str, str]) -> tuple[int, int] | str | None:
    """The single range asked for, None for the whole file, or 'unsatisfiable'."""
    header = request.headers.get("Range")
    if not header:
        return None
    if_range = request.headers.get("If-Range")
    if if_range and if_range.strip() != headers["ETag"]:
        return None  # the client holds other bytes: send the whole file
    match = RANGE.match(header)
    if match is None:
        return None  # several ranges or another unit: ignoring Range is allowed
    first, last = match.groups()
    if not first and not last:
        return None
    if not first:  # the last N bytes
        count = int(last)
        if count == 0 or size == 0:
            return "unsatisfiable"
        return max(0, size - count), size - 1
    start = int(first)
    end = min(int(last), size - 1) if last else size - 1
    if start >= size or (last and int(last) < start):
        return "unsatisfiable"
    return start, end


def _stream(handle: Any, remaining: int) -> Any:
    """Yield `remaining` bytes from an open file, then close it."""
    try:
        while remaining > 0:
            block = handle.read(min(READ_BLOCK, remaining))
            if not block:
                break
            remaining -= len(block)
            yield block
    finally:
        handle.close()


def serve_file(source: Source, version_id: str, file: model.ExportFile,
               cache_control: str, head_only: bool, since_id: str | None = None) -> Response:
    """200, 206, 304 or 416 for a ready export file that its caller has found in storage
    (`ExportService.current`, `file_problem`), `since_id` a delta package's; HEAD never opens
    the file."""
    headers = _file_headers(source, version_id, file, cache_control, since_id)
    size = file.size
    if _not_modified(file.sha256):
        for name in ("Content-Type", "Content-Disposition"):
            headers.pop(name)
        return Response(status=304, headers=headers)
    if head_only:
        response = Response(status=200, headers=headers)
        response.headers["Content-Length"] = str(size)
        return response
    wanted = _byte_range(size, headers)
    if wanted == "unsatisfiable":
        return Response(status=416, headers={"Content-Range": f"bytes */{size}",
                                             "Accept-Ranges": "bytes",
                                             "ETag": headers["ETag"]})
    storage = export_service().storage
    try:
        handle = storage.open(file.sha256)
    except FileNotFoundError:
        raise FileGone(file.sha256) from None
    if isinstance(wanted, tuple):
        start, end = wanted
        handle.seek(start)
        headers["Content-Range"] = f"bytes {start}-{end}/{size}"
        response = Response(_stream(handle, end - start + 1), status=206, headers=headers,
                            direct_passthrough=True)
        response.headers["Content-Length"] = str(end - start + 1)
        return response
    body = wrap_file(request.environ, handle, READ_BLOCK)
    response = Response(body, status=200, headers=headers, direct_passthrough=True)
    response.headers["Content-Length"] = str(size)
    return response


def _pending(status: ExportStatus, code: int = 208) -> Response:
    """208 (202 for the POST that queued it): queued or building, when to ask again, how far."""
    retry_after = str(settings_of(current_app).exports.retry_after)
    return json_response({"state": status.state, "progress": status.progress}, code, {
        "Retry-After": retry_after, "X-Export-Progress": f"{status.progress}%",
        "Cache-Control": "no-cache"})


def _failed(status: ExportStatus) -> Response:
    """500: the latest build failed, until a POST queues another one; 503 with Retry-After if a
    storage fault (a full or read-only disk) failed it: the server's fault, not the export's."""
    error = status.error or "The export build failed."
    code, headers = 500, {"Cache-Control": "no-cache"}
    if status.job is not None and (status.job.result or {}).get("fault"):
        code = 503
        headers["Retry-After"] = str(RETRY_AFTER)
    return json_response({"state": FAILED, "error": error, "code": code,
                          "status": HTTPStatus(code).phrase,
                          "message": f"The export build failed: {error}"}, code, headers)


def _none() -> Response:
    """204: no export, and none is queued (POST builds one)."""
    return Response(status=204, headers={"Cache-Control": "no-cache"})


def _answer(source: Source, version: model.Version, base: model.Version | None,
            head_only: bool) -> Response:
    """GET and HEAD: 200 ready, 208 queued or building, 204 none, 500 failed; never builds."""
    service = export_service()
    status = service.current(source, version, base)  # a READY file has been found in storage
    if status.state == READY:
        assert status.file is not None
        try:
            return serve_file(source, version.id, status.file, "no-cache", head_only,
                              base.id if base is not None else None)
        except FileGone:
            # removed between the look and the open (another host's EXPORT_DIR, a purge)
            status = service.file_lost(source, version, status.file.sha256, base=base)
    if status.state == FAILED:
        return _failed(status)
    if status.state in (PENDING, BUILDING):
        return _pending(status)
    return _none()


@owner_routes(blp, "sources/<source_id>/<version_id>/export/", "export")
class Export(MethodView):
    @blp.arguments(ExportArgsSchema, location="query", error_status_code=400)
    @blp.response(200, description="The export file (zip holding export.json; a delta package "
                                    "also manifest.json).", content_type="application/zip")
    @blp.alt_response(204, description="No export (POST builds one).")
    @blp.alt_response(208, schema=ExportStateOut, description="Queued or being built.")
    @blp.alt_response(500, schema=ExportFailedOut, description="The build failed.")
    @blp.alt_response(503, schema=ExportFailedOut, description=(
        "The build failed on a storage fault (a full or read-only disk): Retry-After."))
    @errors(blp, 400, 401, 404, 405)
    def get(self, args: dict[str, Any], source_id: str, version_id: str,
            owner_kind: str | None = None, owner_id: str | None = None) -> Response:
        """Download the export of a version (`since`: its delta package from an earlier release):
        200, 208 while it is built, 204 if there is none."""
        source, version, base = _export_target(owner_kind, owner_id, source_id, version_id,
                                               args.get("since"))
        return _answer(source, version, base, head_only=False)

    @blp.arguments(ExportArgsSchema, location="query", error_status_code=400)
    @blp.response(200, description="The export's headers (the file is not read).")
    @blp.alt_response(204, description="No export (POST builds one).")
    @blp.alt_response(208, schema=ExportStateOut, description="Queued or being built.")
    @blp.alt_response(500, schema=ExportFailedOut, description="The build failed.")
    @blp.alt_response(503, schema=ExportFailedOut, description=(
        "The build failed on a storage fault (a full or read-only disk): Retry-After."))
    @errors(blp, 400, 401, 404, 405)
    def head(self, args: dict[str, Any], source_id: str, version_id: str,
             owner_kind: str | None = None, owner_id: str | None = None) -> Response:
        """Probe: 200 with the file's headers, 208 building, 204 none."""
        source, version, base = _export_target(owner_kind, owner_id, source_id, version_id,
                                               args.get("since"))
        return _answer(source, version, base, head_only=True)

    @blp.arguments(ExportPostArgsSchema, location="query", error_status_code=400)
    @blp.response(202, ExportStateOut)
    @blp.alt_response(204, description="Ready, and `noRedirect=true` was asked.")
    @blp.alt_response(303, description="Ready: see the export (Location, and OCL's `URL`).")
    @errors(blp, 400, 401, 403, 404, 405, 409)
    def post(self, args: dict[str, Any], source_id: str, version_id: str,
             owner_kind: str | None = None, owner_id: str | None = None) -> Response:
        """Build the export: 202 queued, 303 if it is ready (`force=true`: rebuild), 409 building.

        On a released version this fills a cache, so view rights are enough; otherwise, and for
        `force`, it needs edit rights.
        """
        source, version, base = _export_target(owner_kind, owner_id, source_id, version_id,
                                               args.get("since"))
        accounts, caller = domain().accounts, current_caller()
        if args["force"] or not version.released:
            accounts.require_edit(caller, source)
        service = export_service()
        status = service.current(source, version, base)
        if status.requeued:  # its file was lost: this request queued the rebuild
            return _pending(status, code=202)
        if status.state in (PENDING, BUILDING) and not args["force"]:
            return error_response_409(status)
        if status.state == READY and not args["force"]:
            if args["noRedirect"]:
                return Response(status=204)
            location = f"{version.url}export/"
            if base is not None:
                location += f"?{urlencode({'since': base.id})}"
            return Response(status=303, headers={"Location": location, "URL": location})
        return _pending(service.request(source, version, rebuild=True, base=base), code=202)

    @blp.arguments(ExportArgsSchema, location="query", error_status_code=400)
    @blp.response(204)
    @errors(blp, 400, 401, 403, 404, 405)
    def delete(self, args: dict[str, Any], source_id: str, version_id: str,
               owner_kind: str | None = None, owner_id: str | None = None) -> Response:
        """Delete the export's file and cancel its build; 404 if there is none."""
        source, version, base = _export_target(owner_kind, owner_id, source_id, version_id,
                                               args.get("since"))
        domain().accounts.require_edit(current_caller(), source)
        if not export_service().delete(source, version, base):
            what = "export" if base is None else f"delta package since '{base.id}'"
            raise NotFound(f"Version '{version.id}' of '{source.id}' has no {what}.")
        return Response(status=204)


def error_response_409(status: ExportStatus) -> Response:
    """409: a build of this export is queued or running already (its progress in the body)."""
    retry_after = str(settings_of(current_app).exports.retry_after)
    return json_response({"code": 409, "status": HTTPStatus(409).phrase,
                          "message": "This export is being built; GET it when it is ready.",
                          "state": status.state, "progress": status.progress}, 409,
                         {"Retry-After": retry_after, "X-Export-Progress": f"{status.progress}%"})


@owner_routes(blp, "sources/<source_id>/exports/<sha256>.zip", "export_file")
class ExportFile(MethodView):
    @blp.response(200, description="The immutable export file named by its sha256.",
                  content_type="application/zip")
    @errors(blp, 401, 404)
    def get(self, source_id: str, sha256: str, owner_kind: str | None = None,
            owner_id: str | None = None) -> Response:
        """Download an export file by its sha256 (ranges and If-None-Match work)."""
        return self._serve(source_id, sha256, owner_kind, owner_id, head_only=False)

    @blp.response(200, description="The file's headers.")
    @errors(blp, 401, 404)
    def head(self, source_id: str, sha256: str, owner_kind: str | None = None,
             owner_id: str | None = None) -> Response:
        """The file's headers."""
        return self._serve(source_id, sha256, owner_kind, owner_id, head_only=True)

    @staticmethod
    def _serve(source_id: str, sha256: str, owner_kind: str | None, owner_id: str | None,
               head_only: bool) -> Response:
        _, source = resolve_source(owner_kind, owner_id, source_id)
        service = export_service()
        record = service.file_record(source, sha256)
        if record is None or record.file is None or service.file_problem(record.file) is not None:
            raise NotFound(f"No export file {sha256} in '{source.id}'.")
        try:
            return serve_file(source, record.version_id, record.file, IMMUTABLE, head_only,
                              record.since_id)
        except FileGone:
            raise NotFound(f"No export file {sha256} in '{source.id}'.") from None
