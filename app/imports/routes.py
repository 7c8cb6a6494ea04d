"""Bulk-import endpoints: submit an upload, follow the job, read results, cancel.

Two views of one job: termsync's own (`/importers/bulk-import/{id}/`, its results and report),
and OCL's, for OCL's clients (`/importers/bulk-import/?task={id}`, `/tasks/`, with OCL's state
names and result shapes). OCL's alias paths (`/importers/bulk-import-parallel-inline/`,
`/manage/bulkimport/`) answer as `/importers/bulk-import/`; a path segment after any of them
names a job when one has that id, and otherwise a queue.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from typing import Any

from flask import Response, current_app, request
from flask.views import MethodView

from ..api.common import current_caller, json_response, list_response, page_url, paging_headers
from ..api.docs import errors
from ..api.parsing import Blueprint
from ..domain.accounts import require_login
from ..domain.errors import Invalid, NotAllowed
from ..model import Job
from .csvformat import template
from .formats import format_of
from .render import render_job, render_task
from .schemas import (
    CancelTaskSchema,
    ImportArgsSchema,
    ImportJobOut,
    LineResultOut,
    ResultArgsSchema,
    SubmittedOut,
    TaskArgsSchema,
    TaskListArgsSchema,
    TaskOut,
    TemplateArgsSchema,
)
from .service import ImportJobs, ImportOptions, parse_actions

blp = Blueprint("imports", __name__,
                description="Bulk import of OCL JSON lines, OCL CSV and OCL export zips as "
                            "asynchronous jobs.")
tasks_blp = Blueprint("tasks", __name__, description="Import jobs as OCL's clients see tasks.")

EXTENSION = "termsync.imports"
IMPORTS = "/importers/bulk-import"
# OCL's other paths to the same importer, as its clients use them (ocldev's parallel importer,
# the `ocl` CLI's `bulk_import`).
ALIASES = ("/importers/bulk-import-parallel-inline", "/manage/bulkimport")
READ_SIZE = 64 * 1024
# Room for multipart boundaries and headers on top of the file itself.
MULTIPART_OVERHEAD = 64 * 1024

UPLOAD_DOC = {"requestBody": {"required": True, "content": {
    "multipart/form-data": {"schema": {"type": "object", "properties": {
        "file": {"type": "string", "format": "binary"},
        "data": {"type": "string", "description": "The lines as text (OCL's `data` field)."}}}},
    "application/x-ndjson": {"schema": {"type": "string"}},
    "application/json": {"schema": {"type": "string",
                                    "description": "One JSON object per line."}},
    "text/csv": {"schema": {"type": "string"}},
    "application/zip": {"schema": {"type": "string", "format": "binary",
                                   "description": "An OCL export (zip with export.json)."}},
    "application/x-www-form-urlencoded": {"schema": {"type": "object", "properties": {
        "data": {"type": "string"}}}}}}}


def imports() -> ImportJobs:
    """The bulk-import service of the running app."""
    service: ImportJobs = current_app.extensions[EXTENSION]
    return service


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


def _form_data(limit: int) -> Iterator[bytes]:
    """OCL's `data` form field (ocldev's parallel importer sends its lines that way)."""
    request.max_form_memory_size = limit
    data = request.form.get("data")
    if data is None:
        raise Invalid("Send the upload as the multipart field 'file', the form field 'data', "
                      "or the request body.", errors={"file": ["Missing."]})
    return iter([data.encode()])


def _upload(args: dict[str, Any]) -> tuple[Iterator[bytes], str | None, str | None]:
    """The body as streamed chunks, its format (None: sniff it) and file name: multipart `file`
    (or `data`), a form's `data`, or the raw body."""
    limit = imports().limits.max_bytes
    mimetype = request.mimetype
    if mimetype == "multipart/form-data":
        request.max_content_length = limit + MULTIPART_OVERHEAD
        upload = request.files.get("file")
        if upload is None:
            return _form_data(limit), args["format"], None
        filename = upload.filename
        return (_read(upload.stream, close=True),
                args["format"] or format_of(upload.mimetype, filename), filename)
    request.max_content_length = limit
    if mimetype == "application/x-www-form-urlencoded":
        return _form_data(limit), args["format"], None
    return _read(request.stream), args["format"] or format_of(mimetype, None), None


def _submit(args: dict[str, Any], queue: str | None) -> Response:
    """Store an upload and queue its job (in `queue` when one is named)."""
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
                            dry_run=args["dryRun"], target=target, filename=filename, queue=queue)
    job = service.submit(caller, chunks, options, key)
    current_app.extensions["termsync.jobs"].wake()
    return _submitted(job)


def _submitted(job: Job, replayed: bool = False) -> Response:
    rendered = render_job(job)
    headers = {"Location": rendered["url"]}
    if replayed:
        headers["Idempotent-Replayed"] = "true"
    return json_response({"task": rendered["id"], "id": rendered["id"],
                          "state": rendered["state"], "queue": rendered["queue"]}, 202, headers)


def _task_answer(args: dict[str, Any]) -> Response:
    """OCL's view of one job: the task, and its results when done (`result=json|report|csv`)."""
    job = imports().get(current_caller(), args["task"])
    if args["result"] == "csv":
        return _report_csv(job)
    task = render_task(job)
    if args["result"] in ("json", "all") and task["state"] not in ("PENDING", "STARTED"):
        result = imports().ocl_json_result(job)
        task["result"] = result
        # what ocldev's OclImportResults.load_from_json reads from this answer
        task.update(count=result["processed"], num_skipped=len(result["exists"]),
                    total_lines=result["total"], elapsed_seconds=result["elapsed_seconds"])
    return json_response(task)


def _task_list(args: dict[str, Any], queue: str | None, everyone: bool = False) -> Response:
    """OCL's list of import tasks, newest first: the caller's (with `everyone`, an admin's are
    everyone's, as OCL's /tasks/ is)."""
    caller = current_caller()
    states = [part for part in (args.get("state") or "").split(",") if part.strip()] or None
    return list_response(args, lambda skip, limit: imports().list_tasks(
        caller, queue=queue, ocl_states=states, everyone=everyone, name=args.get("q"),
        started_since=args["start_date"], skip=skip, limit=limit), render_task)


def _report_csv(job: Job) -> Response:
    """The input's line numbers with status and error, for a spreadsheet, streamed."""
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
        "Content-Disposition": f'attachment; filename="import_{job.id}_report.csv"'})


def _job_or_404(job_id: str) -> Job:
    return imports().get(current_caller(), job_id)


def _is_job(segment: str) -> bool:
    """A path segment names a job when the caller may see an import job with that id; else it is
    a queue (so another user's job id answers exactly as an unknown one)."""
    return imports().job_or_none(current_caller(), segment) is not None


class BulkImports(MethodView):
    @blp.arguments(TaskArgsSchema, location="query", error_status_code=400)
    @blp.response(200, TaskOut(many=True))
    @errors(blp, 400, 401, 404)
    def get(self, args: dict[str, Any]) -> Response:
        """OCL's view: the caller's import tasks, or with `task=ID` that one (`result=json|report|csv`)."""
        if args["task"]:
            return _task_answer(args)
        return _task_list(args, None)

    @blp.arguments(ImportArgsSchema, location="query", error_status_code=400)
    @blp.response(202, SubmittedOut)
    @blp.doc(**UPLOAD_DOC)
    @errors(blp, 400, 401, 404, 413, 429)
    def post(self, args: dict[str, Any]) -> Response:
        """Upload OCL JSON lines, OCL CSV or an OCL export zip; the job runs in the background.

        Without a Content-Type (or a file name) that says which, the format is sniffed. The
        `Idempotency-Key` header makes a repeat return the earlier job instead of a new one.
        """
        return _submit(args, None)

    @blp.arguments(CancelTaskSchema)
    @blp.response(204)
    @errors(blp, 400, 401, 404)
    def delete(self, payload: dict[str, Any]) -> Response:
        """Cancel a job named in the body (OCL's `{"task_id": ...}`)."""
        imports().cancel(current_caller(), payload["task_id"])
        return Response(status=204)


# A segment is a job (termsync's view of it) or a queue (OCL's list of its tasks).
JOB_OR_TASKS = {"oneOf": [{"$ref": "#/components/schemas/ImportJobOut"},
                          {"type": "array", "items": {"$ref": "#/components/schemas/TaskOut"}}]}


class Segment(MethodView):
    @blp.arguments(TaskArgsSchema, location="query", error_status_code=400)
    @blp.response(200, JOB_OR_TASKS, description="The job, or the tasks of the queue.")
    @errors(blp, 400, 401, 404)
    def get(self, args: dict[str, Any], segment: str) -> Response:
        """A job (termsync's view: state, summary, timing), or the tasks of a queue."""
        if _is_job(segment):
            return json_response(render_job(_job_or_404(segment)))
        if args["task"]:
            return _task_answer(args)
        return _task_list(args, segment)

    @blp.arguments(ImportArgsSchema, location="query", error_status_code=400)
    @blp.response(202, SubmittedOut)
    @blp.doc(**UPLOAD_DOC)
    @errors(blp, 400, 401, 404, 405, 413, 429)
    def post(self, args: dict[str, Any], segment: str) -> Response:
        """Submit into a named queue: its jobs run one at a time, in order."""
        if _is_job(segment):
            raise NotAllowed("This is an import job; submit to /importers/bulk-import/ or a queue.")
        return _submit(args, segment)

    @blp.response(200, ImportJobOut)
    @errors(blp, 401, 404)
    def delete(self, segment: str) -> Response:
        """Cancel a job; it stops before its next batch (what it applied stays)."""
        return json_response(render_job(imports().cancel(current_caller(), segment)))


for _number, _base in enumerate((IMPORTS, *ALIASES)):
    blp.route(f"{_base}/", endpoint=f"bulk_imports_{_number}")(BulkImports)
    blp.route(f"{_base}/<segment>/", endpoint=f"bulk_import_{_number}")(Segment)


@blp.route(f"{IMPORTS}/template/")
class Template(MethodView):
    @blp.arguments(TemplateArgsSchema, location="query", error_status_code=400)
    @blp.response(200, {"type": "string"}, content_type="text/csv")
    @errors(blp, 400)
    def get(self, args: dict[str, Any]) -> Response:
        """A CSV header row with one example line, for concepts or mappings."""
        return Response(template(args["type"]), mimetype="text/csv", headers={
            "Content-Disposition": f'attachment; filename="ocl_{args["type"]}_template.csv"'})


@blp.route(f"{IMPORTS}/<job_id>/results/")
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


@blp.route(f"{IMPORTS}/<job_id>/report.csv")
class BulkImportReport(MethodView):
    @blp.response(200, {"type": "string"}, content_type="text/csv")
    @errors(blp, 401, 404)
    def get(self, job_id: str) -> Response:
        """The input's line numbers with status and error, for a spreadsheet."""
        return _report_csv(_job_or_404(job_id))


@tasks_blp.route("/tasks/")
class Tasks(MethodView):
    @tasks_blp.arguments(TaskListArgsSchema, location="query", error_status_code=400)
    @tasks_blp.response(200, TaskOut(many=True))
    @errors(tasks_blp, 400, 401)
    def get(self, args: dict[str, Any]) -> Response:
        """The caller's import tasks (an admin's: everyone's), newest first; `state=` filters."""
        return _task_list(args, None, everyone=True)


@tasks_blp.route("/user/tasks/")
class CallerTasks(MethodView):
    @tasks_blp.arguments(TaskListArgsSchema, location="query", error_status_code=400)
    @tasks_blp.response(200, TaskOut(many=True))
    @errors(tasks_blp, 400, 401)
    def get(self, args: dict[str, Any]) -> Response:
        """The caller's import tasks, newest first."""
        return _task_list(args, None)


@tasks_blp.route("/tasks/<task_id>/")
class Task(MethodView):
    @tasks_blp.arguments(TaskArgsSchema, location="query", error_status_code=400)
    @tasks_blp.response(200, TaskOut)
    @errors(tasks_blp, 400, 401, 404)
    def get(self, args: dict[str, Any], task_id: str) -> Response:
        """One task in OCL's shape (`result=json` adds the results when it is done)."""
        return _task_answer(dict(args, task=task_id))

    @tasks_blp.response(204)
    @errors(tasks_blp, 400, 401, 404)
    def delete(self, task_id: str) -> Response:
        """Revoke (cancel) a task; 400 if it is already finished, as OCL answers."""
        job = _job_or_404(task_id)
        if render_task(job)["state"] not in ("PENDING", "STARTED"):
            raise Invalid("Task is already finished.")
        imports().cancel(current_caller(), task_id)
        return Response(status=204)
