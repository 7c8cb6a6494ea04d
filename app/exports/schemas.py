"""Schemas of the export endpoints: what a POST asks, what 202, 208 and 500 answer."""

from __future__ import annotations

from marshmallow import Schema, fields

from ..api.schemas import QuerySchema


class ExportArgsSchema(QuerySchema):
    """Which export: the version's, or with `since` its delta package from an earlier release."""

    since = fields.String(metadata={"description": (
        "A delta package instead of the whole export: the items created, changed, retired or "
        "deleted since this earlier released version (its id) of the same repository.")})


class ExportPostArgsSchema(ExportArgsSchema):
    """How to ask for an export (OCL's parameters)."""

    force = fields.Boolean(load_default=False,
                           metadata={"description": "Rebuild even if the export is ready (202)."})
    noRedirect = fields.Boolean(load_default=False,
                                metadata={"description": "Answer a ready export with 204, not 303."})


class ExportStateOut(Schema):
    """A build that is queued or running (208, or 202 when a POST queued it)."""

    state = fields.String(metadata={"description": "PENDING or BUILDING."})
    progress = fields.Integer(metadata={"description": "Percent of items written (0..99)."})


class ExportFailedOut(Schema):
    """A build that failed (500), until a POST or a later GET queues a new one."""

    state = fields.String(metadata={"description": "FAILED."})
    error = fields.String(metadata={"description": "Why the build failed."})
    code = fields.Integer()
    status = fields.String()
    message = fields.String()
