"""Query-argument and response schemas of the HTTP API (request bodies: app.domain.payloads)."""

from __future__ import annotations

from marshmallow import EXCLUDE, INCLUDE, Schema, fields, validate


def _describe(text: str) -> dict[str, str]:
    return {"description": text}


class QuerySchema(Schema):
    """Base for query strings: unknown parameters are ignored, as OCL does."""

    class Meta:
        unknown = EXCLUDE


class ListArgsSchema(QuerySchema):
    """Page through a list."""

    limit = fields.Integer(load_default=100, validate=validate.Range(min=1, max=500),
                           metadata=_describe("Items per page, 1..500."))
    page = fields.Integer(load_default=1, validate=validate.Range(min=1),
                          metadata=_describe("Page number, from 1."))


class VersionListArgsSchema(ListArgsSchema):
    """Page through the versions of a source, newest first."""

    released = fields.Boolean(load_default=None, allow_none=True,
                              metadata=_describe("Only released (true) or unreleased (false)."))


class ItemListArgsSchema(ListArgsSchema):
    """Page through concepts or mappings of a version."""

    includeRetired = fields.Boolean(load_default=False,
                                    metadata=_describe("Include retired items."))


class DiffArgsSchema(QuerySchema):
    """Content (and diffs) of a source or version."""

    includeConcepts = fields.Boolean(load_default=False, metadata=_describe("Include concepts."))
    includeMappings = fields.Boolean(load_default=False, metadata=_describe("Include mappings."))
    includeRetired = fields.Boolean(
        load_default=False,
        metadata=_describe("Include retired items and tombstones of deleted ones."))
    updatedSince = fields.String(
        load_default=None, allow_none=True,
        metadata=_describe("Only items updated at or after this ISO 8601 time (zone-less = UTC)."))
    limit = fields.Integer(load_default=0, validate=validate.Range(min=0, max=500),
                           metadata=_describe("Items per page, 1..500; 0 or absent means 500."))
    cursor = fields.String(load_default=None, allow_none=True,
                           metadata=_describe("Opaque keyset cursor; follow the `next` header."))


class HardDeleteArgsSchema(QuerySchema):
    """Delete options."""

    hard = fields.Boolean(load_default=False,
                          metadata=_describe("Delete (leaving a tombstone) instead of retiring."))


class OutSchema(Schema):
    """Base of response schemas: OCL payloads carry more fields than documented here."""

    class Meta:
        unknown = INCLUDE


class NameOut(OutSchema):
    type = fields.String()
    name = fields.String()
    locale = fields.String()
    locale_preferred = fields.Boolean()
    name_type = fields.String(allow_none=True)
    external_id = fields.String(allow_none=True)


class DescriptionOut(OutSchema):
    type = fields.String()
    description = fields.String()
    locale = fields.String()
    locale_preferred = fields.Boolean()
    description_type = fields.String(allow_none=True)
    external_id = fields.String(allow_none=True)


class ItemOut(OutSchema):
    """Fields every concept and mapping has."""

    type = fields.String(metadata=_describe("'Concept' or 'Mapping'."))
    id = fields.String()
    url = fields.String()
    version = fields.String(metadata=_describe("Changes on every write to the item."))
    version_url = fields.String()
    retired = fields.Boolean()
    external_id = fields.String(allow_none=True)
    extras = fields.Dict(allow_none=True)
    source = fields.String()
    owner = fields.String()
    owner_type = fields.String()
    created_on = fields.String()
    updated_on = fields.String()
    created_by = fields.String(allow_none=True)
    updated_by = fields.String(allow_none=True)


class ConceptOut(ItemOut):
    """A concept in OCL's shape."""

    concept_class = fields.String()
    datatype = fields.String(allow_none=True)
    names = fields.List(fields.Nested(NameOut))
    descriptions = fields.List(fields.Nested(DescriptionOut))
    display_name = fields.String(allow_none=True)
    display_locale = fields.String(allow_none=True)
    parent_concept_urls = fields.List(fields.String())


class MappingOut(ItemOut):
    """A mapping in OCL's shape."""

    map_type = fields.String()
    from_concept_url = fields.String(allow_none=True)
    from_concept_code = fields.String(allow_none=True)
    from_source_url = fields.String(allow_none=True)
    to_concept_url = fields.String(allow_none=True)
    to_concept_code = fields.String(allow_none=True)
    to_source_url = fields.String(allow_none=True)
    to_concept_name = fields.String(allow_none=True)


class ChecksumsOut(OutSchema):
    content = fields.String(metadata=_describe(
        "sha256 over 'url<TAB>version<LF>' of every item in url order."))


class SourceOut(OutSchema):
    """A source (HEAD) in OCL's shape."""

    type = fields.String()
    id = fields.String()
    url = fields.String()
    short_code = fields.String(allow_none=True)
    name = fields.String(allow_none=True)
    full_name = fields.String(allow_none=True)
    description = fields.String(allow_none=True)
    source_type = fields.String(allow_none=True)
    public_access = fields.String()
    default_locale = fields.String(allow_none=True)
    supported_locales = fields.List(fields.String(), allow_none=True)
    owner = fields.String()
    owner_type = fields.String()
    owner_url = fields.String()
    version = fields.String()
    lastUpdated = fields.String(allow_none=True, metadata=_describe("Newest item update."))
    checksums = fields.Nested(ChecksumsOut)
    created_on = fields.String()
    updated_on = fields.String()


class VersionOut(SourceOut):
    """A source version in OCL's shape."""

    version_url = fields.String()
    released = fields.Boolean()
    retired = fields.Boolean()
    previous_version_url = fields.String(allow_none=True)


class SourceContentOut(SourceOut):
    """A source or version with a page of its concepts and mappings."""

    concepts = fields.List(fields.Dict(), metadata=_describe("Concepts, or tombstones."))
    mappings = fields.List(fields.Dict(), metadata=_describe("Mappings, or tombstones."))


class OrgOut(OutSchema):
    """An organization."""

    type = fields.String()
    id = fields.String()
    url = fields.String()
    name = fields.String(allow_none=True)
    company = fields.String(allow_none=True)
    website = fields.String(allow_none=True)
    location = fields.String(allow_none=True)
    public_access = fields.String()
    extras = fields.Dict(allow_none=True)
    created_on = fields.String(allow_none=True)
    updated_on = fields.String(allow_none=True)


class UserOut(OutSchema):
    """A user account."""

    type = fields.String()
    id = fields.String()
    username = fields.String()
    name = fields.String(allow_none=True)
    email = fields.String(allow_none=True)
    company = fields.String(allow_none=True)
    is_admin = fields.Boolean()
    url = fields.String()


class TokenOut(OutSchema):
    """A newly issued API token (shown once)."""

    username = fields.String()
    token = fields.String(metadata=_describe("Send as 'Authorization: Token <token>'."))


class TokenIn(Schema):
    """Optionally choose the token value (at least 8 characters)."""

    class Meta:
        unknown = EXCLUDE

    token = fields.String(load_default=None, allow_none=True, validate=validate.Length(min=8))
