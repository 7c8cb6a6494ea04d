"""Bulk-import endpoints: submit an upload, follow the job, read results, cancel."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from typing import Any

from flask import Response, current_app, request
from flask.views import MethodView
from flask_smorest import Blueprint

from ..api.common import current_caller, json_response, list_response, page_url, paging_headers
from ..api.docs import errors
from ..domain.accounts import require_login
from ..domain.errors import Invalid
from .csvformat import template
from .schemas import (
    ImportArgsSchema,
    ImportJobOut,
    ImportListArgsSchema,
    LineResultOut,
    ResultArgsSchema,
    SubmittedOut,
    TemplateArgsSchema,
)
from .service import ImportJobs, ImportOptions, parse_actions, render_job

blp = Blueprint("imports", __name__, url_prefix="/importers/bulk-import",
                description="Bulk import of OCL JSON lines and OCL CSV as asynchronous jobs.")

READ_SIZE = 64 * 1024
# Room for multipart boundaries and headers on top of the file itself.
MULTIPART_OVERHEAD = 64 * 1024

UPLOAD_DOC = {"requestBody": {"required": True, "content": {
    "multipart/form-data": {"schema": {"type": "object", "properties": {
        "file": {"type": "string", "format": "binary"}}}},
    "application/x-ndjson": {"schema": {"type": "string"}},
    "application/json": {"schema": {"type": "string",
                                    "description": "One JSON object per line."}},
    "text/csv": {"schema": {"type": "string"}}}}}


def imports() -> ImportJobs:
    """The bulk-import service of the running app."""
    return current_app.extensions["termsync.imports"]


def _read(stream: Any, close: bool = False) -> Iterator[bytes]:
    try:
        while True:
            chunk = stream.read(READ_SIZE)
            if not chunk:
                return
            yield chunk
    finally:
        if close:  # werkzeug spooled the multipart file to a temp file: let it go now
            stream.close()


def _upload(args: dict[str, Any]) -> tuple[Iterator[bytes], str, str | None]:
    """The body as streamed chunks, its format and file name (multipart `file` or raw body)."""
    limit = imports().limits.max_bytes
    if request.mimetype == "multipart/form-data":
        request.max_content_length = limit + MULTIPART_OVERHEAD
        upload = request.files.get("file")
        if upload is None:
            raise Invalid("A multipart upload needs the file in the field 'file'.",
                          errors={"file": ["Missing."]})
        filename = upload.filename
        is_csv = upload.mimetype == "text/csv" or (filename or "").lower().endswith(".csv")
        chunks = _read(upload.stream, close=True)
    else:
        request.max_content_length = limit
        filename = None
        is_csv = request.mimetype == "text/csv"
        chunks = _read(request.stream)
    fmt = args["format"] or ("csv" if is_csv else "jsonl")
    return chunks, fmt, filename


def _job_or_404(job_id: str) -> dict[str, Any]:
    return imports().get(current_caller(), job_id)


@blp.route("/")
class BulkImports(MethodView):
    @blp.arguments(ImportListArgsSchema, location="query", error_status_code=400)
    @blp.response(200, ImportJobOut(many=True))
    @errors(blp, 400, 401)
    def get(self, args: dict[str, Any]) -> Response:
        """The caller's import jobs, newest first."""
        caller = current_caller()
        require_login(caller)
        return list_response(args, lambda skip, limit: imports().list_jobs(caller, skip, limit),
                             render_job)

    @blp.arguments(ImportArgsSchema, location="query", error_status_code=400)
    @blp.response(202, SubmittedOut)
    @blp.doc(**UPLOAD_DOC)
    @errors(blp, 400, 401, 404, 413, 429)
    def post(self, args: dict[str, Any]) -> Response:
        """Upload OCL JSON lines or OCL CSV; the job runs in the background.

        The `Idempotency-Key` header makes a repeat return the earlier job instead of a new one.
        """
        caller = current_caller()
        require_login(caller)
        service = imports()
        key = request.headers.get("Idempotency-Key") or None
        earlier = service.earlier_job(caller, key)
        if earlier is not None:
            return _submitted(earlier, replayed=True)
        target = None
        if args["owner"] or args["source"]:
            if not (args["owner"] and args["source"]):
                raise Invalid("Name the target source with both 'owner' and 'source'.",
                              errors={"source": ["owner and source go together."]})
            kind = "users" if args["owner_type"] == "User" else "orgs"
            target = service.resolve_target(caller, kind, args["owner"], args["source"])
        chunks, fmt, filename = _upload(args)
        options = ImportOptions(format=fmt, update_if_exists=args["update_if_exists"],
                                dry_run=args["dryRun"], target=target, filename=filename)
        job = service.submit(caller, chunks, options, key)
        current_app.extensions["termsync.jobs"].wake()
        return _submitted(job)


def _submitted(job: dict[str, Any], replayed: bool = False) -> Response:
    rendered = render_job(job)
    headers = {"Location": rendered["url"]}
    if replayed:
        headers["Idempotent-Replayed"] = "true"
    return json_response({"id": rendered["id"], "state": rendered["state"]}, 202, headers)


@blp.route("/template/")
class Template(MethodView):
    @blp.arguments(TemplateArgsSchema, location="query", error_status_code=400)
    @blp.response(200, {"type": "string"}, content_type="text/csv")
    @errors(blp, 400)
    def get(self, args: dict[str, Any]) -> Response:
        """A CSV header row with one example line, for concepts or mappings."""
        return Response(template(args["type"]), mimetype="text/csv", headers={
            "Content-Disposition": f'attachment; filename="ocl_{args["type"]}_template.csv"'})


@blp.route("/<job_id>/")
class BulkImport(MethodView):
    @blp.response(200, ImportJobOut)
    @errors(blp, 401, 404)
    def get(self, job_id: str) -> Response:
        """A job: state, summary counts and timing."""
        return json_response(render_job(_job_or_404(job_id)))

    @blp.response(200, ImportJobOut)
    @errors(blp, 401, 404)
    def delete(self, job_id: str) -> Response:
        """Cancel a job; it stops before its next batch (what it applied stays)."""
        return json_response(render_job(imports().cancel(current_caller(), job_id)))


@blp.route("/<job_id>/results/")
class BulkImportResults(MethodView):
    @blp.arguments(ResultArgsSchema, location="query", error_status_code=400)
    @blp.response(200, LineResultOut(many=True))
    @errors(blp, 400, 401, 404)
    def get(self, args: dict[str, Any], job_id: str) -> Response:
        """Per-line results in line order; `status=failed` for the failures only."""
        actions = parse_actions(args["status"])
        after = None
        if args["after"]:
            line, _, part = args["after"].partition(":")
            after = (int(line), int(part or 0))
        results, num_found = imports().result_page(current_caller(), job_id, actions, after,
                                                   args["limit"] + 1)
        more = len(results) > args["limit"]
        results = results[:args["limit"]]
        body = [{"line": r["line"], "part": r.get("part", 0), "type": r.get("type"),
                 "url": r.get("url"), "action": r["action"], "errors": r.get("errors") or []}
                for r in results]
        next_url = None
        if more:
            next_url = page_url(after=f"{results[-1]['line']}:{results[-1].get('part', 0)}",
                                limit=args["limit"])
        return json_response(body, headers=paging_headers(num_found, len(body), next_url))


@blp.route("/<job_id>/report.csv")
class BulkImportReport(MethodView):
    @blp.response(200, {"type": "string"}, content_type="text/csv")
    @errors(blp, 401, 404)
    def get(self, job_id: str) -> Response:
        """The input's line numbers with status and error, for a spreadsheet."""
        job = _job_or_404(job_id)
        rows = imports().report_rows(job)

        def stream() -> Iterator[str]:
            buffer = io.StringIO()
            writer = csv.writer(buffer, lineterminator="\r\n")
            for row in rows:
                writer.writerow(row)
                if buffer.tell() > 64 * 1024:
                    yield buffer.getvalue()
                    buffer.seek(0)
                    buffer.truncate()
            yield buffer.getvalue()

        return Response(stream(), mimetype="text/csv", headers={
            "Content-Disposition": f'attachment; filename="import_{job["_id"]}_report.csv"'})
