"""Request and response schemas of collections and their references."""

from __future__ import annotations

from typing import Any

from marshmallow import EXCLUDE, Schema, ValidationError, fields, validates_schema

from ..api.schemas import ListArgsSchema, OutSchema, QuerySchema, SourceOut


def _describe(text: str) -> dict[str, str]:
    return {"description": text}


class CollectionOut(SourceOut):
    """A collection (HEAD) in OCL's shape."""

    collection_type = fields.String(allow_none=True)
    canonical_url = fields.String(allow_none=True)
    references_url = fields.String()


class ExpressionsSchema(Schema):
    """The expressions of a PUT (OCL's `data`)."""

    class Meta:
        unknown = EXCLUDE

    expressions = fields.List(fields.String(), required=True, metadata=_describe(
        "Concept or mapping URLs: /orgs/O/sources/S/concepts/ID/ follows the concept, "
        "/orgs/O/sources/S/VERSION/concepts/ID/ is pinned to a source version, "
        "/orgs/O/sources/S/concepts/ID/ITEM_VERSION/ to one version of the concept."))


class ReferencesPutSchema(Schema):
    """`PUT .../references/`: `{"data": {"expressions": [...]}}`, as OCL's clients send it."""

    class Meta:
        unknown = EXCLUDE

    data = fields.Nested(ExpressionsSchema, required=True)
    cascade = fields.String(load_default=None, allow_none=True,
                            metadata=_describe("As the `cascade` query parameter."))


class ReferencesDeleteSchema(Schema):
    """`DELETE .../references/`: `{"references": [...]}` (the `ocl` CLI) or `{"expressions"}`."""

    class Meta:
        unknown = EXCLUDE

    references = fields.List(fields.String(), load_default=None)
    expressions = fields.List(fields.String(), load_default=None)

    @validates_schema
    def _some(self, data: dict[str, Any], **kwargs: Any) -> None:
        if not (data.get("references") or data.get("expressions")):
            raise ValidationError("Name the references to remove: {\"references\": [...]}.",
                                  field_name="references")


class CascadeArgsSchema(QuerySchema):
    """How far an added (or removed) concept reference reaches."""

    cascade = fields.String(load_default=None, metadata=_describe(
        "sourcemappings: also each concept's mappings in its source; sourcetoconcepts: also "
        "their target concepts; none (default)."))


class ReferenceListArgsSchema(ListArgsSchema):
    """Page through a collection's references, by expression."""

    q = fields.String(load_default=None, metadata=_describe("Text in the expression."))


class ReferenceResultOut(OutSchema):
    """What happened to one expression of a PUT."""

    added = fields.Boolean()
    expression = fields.String()
    message = fields.String()
    result = fields.String(metadata=_describe(
        "added, exists (already there), not_found, not_allowed (a private source's items in a "
        "collection more people see) or invalid."))
    cascaded_from = fields.String(metadata=_describe("The concept expression that cascaded."))


class ReferenceOut(OutSchema):
    """A reference in OCL's shape."""

    type = fields.String()
    id = fields.Integer()
    expression = fields.String()
    reference_type = fields.String(metadata=_describe("concepts or mappings"))
    uri = fields.String()
    code = fields.String(allow_none=True)
    system = fields.String(allow_none=True)
    version = fields.String(allow_none=True)
    resource_version = fields.String(allow_none=True)
    cascade = fields.String(allow_none=True)
