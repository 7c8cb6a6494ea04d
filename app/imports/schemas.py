"""Query-argument and response schemas of the bulk-import API."""

from __future__ import annotations

from marshmallow import EXCLUDE, INCLUDE, Schema, fields, validate

from ..api.schemas import QuerySchema, TaskListArgsSchema
from ..domain.loader import ACTIONS
from .formats import FORMATS


def _describe(text: str) -> dict[str, str]:
    return {"description": text}


class ImportArgsSchema(QuerySchema):
    """How to apply an upload."""

    update_if_exists = fields.Boolean(
        load_default=False,
        metadata=_describe("Replace items that exist with different content (false: skip them)."))
    dryRun = fields.Boolean(load_default=False,
                            metadata=_describe("Validate and report only; write nothing."))
    format = fields.String(load_default=None, validate=validate.OneOf(FORMATS),
                           metadata=_describe("jsonl, csv or zip (an OCL export); by default "
                                              "from the content type or file name, else sniffed "
                                              "from the first bytes."))
    owner = fields.String(load_default=None,
                          metadata=_describe("Owner of the source that lines without "
                                             "owner/source go into (older CIEL line format)."))
    owner_type = fields.String(load_default="Organization",
                               validate=validate.OneOf(["Organization", "User"]),
                               metadata=_describe("Organization (default) or User."))
    source = fields.String(load_default=None,
                           metadata=_describe("The source that lines without owner/source go into."))


class TaskArgsSchema(TaskListArgsSchema):
    """OCL's view: one task (`task`), its results (`result`), or a page of tasks."""

    task = fields.String(load_default=None, metadata=_describe("A task (job) id."))
    result = fields.String(load_default=None,
                           metadata=_describe("With `task`: json (add OCL's json result), "
                                              "report (the counts, always there), or csv (the "
                                              "per-line report as CSV)."))


class CancelTaskSchema(Schema):
    """OCL's body for cancelling an import."""

    class Meta:
        unknown = EXCLUDE

    task_id = fields.String(required=True, metadata=_describe("The task (job) to cancel."))


class ResultArgsSchema(QuerySchema):
    """Page through a job's per-line results."""

    status = fields.String(load_default=None,
                           metadata=_describe(f"Only these actions, comma-separated: "
                                              f"{', '.join(ACTIONS)}."))
    limit = fields.Integer(load_default=100, validate=validate.Range(min=1, max=500),
                           metadata=_describe("Results per page, 1..500."))
    after = fields.String(load_default=None,
                          validate=validate.Regexp(r"^\d+(:\d+)?$"),
                          metadata=_describe("Keyset cursor (line[:part]); follow `next`."))


class TemplateArgsSchema(QuerySchema):
    """Which CSV template."""

    type = fields.String(load_default="concept", validate=validate.OneOf(["concept", "mapping"]),
                         metadata=_describe("concept or mapping."))


class SummaryOut(Schema):
    total = fields.Integer(metadata=_describe("Input records (lines or CSV rows)."))
    processed = fields.Integer()
    created = fields.Integer()
    updated = fields.Integer()
    unchanged = fields.Integer()
    skipped = fields.Integer()
    failed = fields.Integer()


class ImportJobOut(Schema):
    id = fields.String()
    task = fields.String()
    queue = fields.String()
    url = fields.String()
    state = fields.String(metadata=_describe("SUBMITTED, RUNNING, FINISHED, FAILED or CANCELLED."))
    summary = fields.Nested(SummaryOut)
    format = fields.String()
    filename = fields.String(allow_none=True)
    size = fields.Integer()
    update_if_exists = fields.Boolean()
    dry_run = fields.Boolean()
    target = fields.String(allow_none=True)
    username = fields.String()
    created_on = fields.String()
    started_on = fields.String(allow_none=True)
    finished_on = fields.String(allow_none=True)
    error = fields.String(allow_none=True)
    results_url = fields.String()
    report_url = fields.String()


class SubmittedOut(Schema):
    task = fields.String(metadata=_describe("The job id, as OCL's clients read it."))
    id = fields.String()
    state = fields.String()
    queue = fields.String(metadata=_describe("'default', or the queue named in the path."))


class TaskOut(Schema):
    """An import job as OCL shows a task (with OCL's other fields: children, kwargs, ...)."""

    class Meta:
        unknown = INCLUDE

    id = fields.String()
    task = fields.String()
    state = fields.String(metadata=_describe("PENDING, STARTED, SUCCESS, FAILURE or REVOKED."))
    name = fields.String()
    queue = fields.String()
    username = fields.String()
    created_at = fields.String(allow_none=True)
    started_at = fields.String(allow_none=True)
    finished_at = fields.String(allow_none=True)
    runtime = fields.Float(allow_none=True, metadata=_describe("Seconds."))
    summary = fields.Dict()
    message = fields.String(allow_none=True, metadata=_describe("OCL's one-line summary."))
    report = fields.Dict(allow_none=True, metadata=_describe("Counts per outcome, when done."))
    result = fields.Dict(metadata=_describe("With result=json, when done: each outcome's lines."))
    error_message = fields.String(allow_none=True)
    url = fields.String(metadata=_describe("termsync's own view of the job."))


class LineResultOut(Schema):
    line = fields.Integer(metadata=_describe("Line number in the upload (from 1)."))
    part = fields.Integer(metadata=_describe("Index of the record within a CSV row (inline maps)."))
    type = fields.String(allow_none=True)
    url = fields.String(allow_none=True)
    action = fields.String(metadata=_describe(", ".join(ACTIONS)))
    errors = fields.List(fields.String())
