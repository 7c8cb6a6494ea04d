"""Query-argument and response schemas of the HTTP API (request bodies: app.domain.payloads)."""

from __future__ import annotations

from typing import Any

from flask import current_app
from marshmallow import (
    EXCLUDE,
    INCLUDE,
    Schema,
    ValidationError,
    fields,
    post_load,
    pre_load,
    validate,
    validates_schema,
)

from ..config import settings_of
from ..domain.accounts import MAX_TOKEN_LENGTH, MIN_CHOSEN_TOKEN_LENGTH
from ..domain.errors import Invalid
from ..timeutil import parse_time

MAX_LIST_LIMIT = 500
# The most items one content listing or diff answers is the setting CONTENT_MAX_LIMIT (100,000 by
# default: the OpenMRS module asks for 100000 and never pages).
CONTENT_LIMIT = "CONTENT_MAX_LIMIT (100,000 unless configured)"


NOT_A_TIME = "Not an ISO 8601 time."


def _describe(text: str) -> dict[str, str]:
    return {"description": text}


class Timestamp(fields.String):
    """A time a client gives: any ISO 8601 time (zone-less = UTC), which its view gets in the
    stored format (`timeutil.parse_time`); documented as the string it is sent as.

    It is read after every other field of its schema is valid (`read_times`), so that a request
    with several bad arguments is answered as it always was; `example` is shown in the message
    of a bad one."""

    def __init__(self, *args: Any, example: str | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.example = example


def read_times(schema: Schema, data: dict[str, Any], unread: frozenset[str] = frozenset()
               ) -> dict[str, Any]:
    """`data` with the value of each Timestamp field in the stored format (None for those
    `unread`); a ValidationError naming the first that is not a time."""
    for name, field in schema.fields.items():
        if isinstance(field, Timestamp) and data.get(name) is not None:
            try:
                data[name] = None if name in unread else parse_time(data[name])
            except ValueError:
                raise ValidationError(NOT_A_TIME, name) from None
    return data


class QuerySchema(Schema):
    """Base for query strings: unknown parameters are ignored and an empty value means absent.

    Real OCL clients send parameters termsync has no use for, and empty ones (`?sortAsc=`); none
    of them is a 400 (docs/api.md; docs/compatibility.md lists them). A time that is not one is
    a 400 naming the parameter and its value.
    """

    class Meta:
        unknown = EXCLUDE

    @pre_load
    def _empty_means_absent(self, data: Any, **kwargs: Any) -> Any:
        if not hasattr(data, "keys"):
            return data
        return {key: data.get(key) for key in data.keys()
                if data.get(key) is not None and str(data.get(key)).strip() != ""}

    def unread_times(self, data: dict[str, Any]) -> frozenset[str]:
        """The times the arguments in `data` leave unused, and so unchecked (none but for diffs)."""
        return frozenset()

    @post_load
    def _read_times(self, data: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        try:
            return read_times(self, data, self.unread_times(data))
        except ValidationError as error:
            name = str(error.field_name)
            field = self.fields[name]
            example = field.example if isinstance(field, Timestamp) else None
            raise Invalid(f"{name} {data[name]!r} is not an ISO 8601 time"
                          f"{f' (e.g. {example})' if example else ''}.",
                          errors=error.normalized_messages()) from None


class Limit(fields.Integer):
    """`limit`: more than `maximum` (None: the app's CONTENT_MAX_LIMIT) is served as `maximum`
    (the paging headers say so), 0 or less as the default; a real client's page size is never a
    400."""

    def __init__(self, default: int, maximum: int | None, **kwargs: Any) -> None:
        super().__init__(load_default=default, **kwargs)
        self.default_limit = default
        self.maximum = maximum

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> int:
        number = int(super()._deserialize(value, attr, data, **kwargs))
        if number <= 0:
            return self.default_limit
        maximum = self.maximum if self.maximum is not None else \
            settings_of(current_app).content_max_limit
        return min(number, maximum)


class Page(fields.Integer):
    """`page`, from 1 (less is page 1)."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> int:
        return max(1, int(super()._deserialize(value, attr, data, **kwargs)))


class ListArgsSchema(QuerySchema):
    """Page through a list."""

    limit = Limit(100, MAX_LIST_LIMIT,
                  metadata=_describe(f"Items per page (default 100, at most {MAX_LIST_LIMIT})."))
    page = Page(load_default=1, metadata=_describe("Page number, from 1."))


class RepoListArgsSchema(ListArgsSchema):
    """Page through repositories (sources and collections)."""

    q = fields.String(load_default=None,
                      metadata=_describe("Text in the id, short code, name or full name."))
    owner = fields.String(load_default=None, metadata=_describe("Owner id."))
    ownerType = fields.String(load_default=None,
                              metadata=_describe("'Organization' or 'User' (also 'orgs'/'users')."))
    repoType = fields.String(load_default=None,
                             metadata=_describe("'Source' or 'Collection' (on /repos/ and an "
                                                "owner's repos/; absent: both)."))
    customValidationSchema = fields.String(load_default=None,
                                           metadata=_describe("e.g. 'OpenMRS'."))
    updatedSince = Timestamp(load_default=None,
                             metadata=_describe("Only repositories changed at or after this "
                                                "ISO 8601 time."))


class SearchListArgsSchema(ListArgsSchema):
    """Page through organizations or users."""

    q = fields.String(load_default=None, metadata=_describe("Text in the id or name."))


class TaskListArgsSchema(ListArgsSchema):
    """Page through the caller's tasks (bulk imports)."""

    state = fields.String(load_default=None,
                          metadata=_describe("OCL state names, comma-separated: PENDING, STARTED, "
                                             "SUCCESS, FAILURE, REVOKED."))
    q = fields.String(load_default=None, metadata=_describe("Text in the task's name."))
    start_date = Timestamp(load_default=None,
                           metadata=_describe("Only tasks started at or after this time."))


class VersionListArgsSchema(ListArgsSchema):
    """Page through the versions of a source, newest first."""

    released = fields.Boolean(load_default=None, allow_none=True,
                              metadata=_describe("Only released (true) or unreleased (false)."))
    updatedSince = Timestamp(load_default=None,
                             metadata=_describe("Only versions changed at or after this "
                                                "ISO 8601 time."))


def _choices(description: str) -> Any:
    """A filter that takes one value or several, comma-separated."""
    return fields.String(load_default=None,
                         metadata=_describe(f"{description} (exact; several comma-separated)."))


class ItemListArgsSchema(QuerySchema):
    """Page through concepts or mappings (of a version, or across sources), narrowed by OCL's
    search parameters (every one given must hold)."""

    limit = Limit(100, None,
                  metadata=_describe(f"Items per page (default 100, at most {CONTENT_LIMIT})."))
    page = Page(load_default=1, metadata=_describe("Page number, from 1."))
    includeRetired = fields.Boolean(load_default=False,
                                    metadata=_describe("Include retired items."))
    q = fields.String(load_default=None, metadata=_describe(
        "Text (any case) in the id or a name; for mappings also the map type or an end."))
    conceptClass = _choices("Concept class")
    datatype = _choices("Datatype")
    locale = _choices("Only concepts with a name in this locale")
    mapType = _choices("Map type")
    fromConcept = fields.String(load_default=None, metadata=_describe(
        "Mappings from this concept (its id, or its url)."))
    fromConceptSource = fields.String(load_default=None, metadata=_describe(
        "Mappings from a concept of this source (its id)."))
    fromConceptOwner = fields.String(load_default=None, metadata=_describe(
        "Mappings from a concept of this owner."))
    toConcept = fields.String(load_default=None, metadata=_describe(
        "Mappings to this concept (its id or code, or its url)."))
    toConceptSource = fields.String(load_default=None, metadata=_describe(
        "Mappings to a concept of this source (its id)."))
    toConceptOwner = fields.String(load_default=None, metadata=_describe(
        "Mappings to a concept of this owner."))
    updatedSince = Timestamp(load_default=None, metadata=_describe(
        "Only items updated at or after this ISO 8601 time (zone-less = UTC)."))
    includeMappings = fields.Boolean(load_default=False, metadata=_describe(
        "Concepts: add `mappings`, those from each concept in its source."))
    includeInverseMappings = fields.Boolean(load_default=False, metadata=_describe(
        "Concepts: add `mappings`, those from and to each concept in its source."))
    owner = fields.String(load_default=None, metadata=_describe(
        "Global search: only items of this owner's sources."))
    ownerType = fields.String(load_default=None, metadata=_describe(
        "Global search: 'Organization' or 'User' (also 'orgs'/'users')."))


class HistoryArgsSchema(ListArgsSchema):
    """Page through the versions of one concept or mapping, newest first."""


class ConceptArgsSchema(QuerySchema):
    """What to include with a concept."""

    includeMappings = fields.Boolean(
        load_default=False,
        metadata=_describe("Add `mappings`: the mappings from this concept in its source."))
    includeInverseMappings = fields.Boolean(
        load_default=False,
        metadata=_describe("Add `mappings`: the mappings from and to this concept in its source."))
    includeRetired = fields.Boolean(load_default=False,
                                    metadata=_describe("Include retired mappings."))


class RepoArgsSchema(QuerySchema):
    """What to include with a source or version."""

    includeSummary = fields.Boolean(
        load_default=False,
        metadata=_describe("Add `summary`: active concepts and mappings (and versions of HEAD)."))


class DiffArgsSchema(RepoArgsSchema):
    """Content (and diffs) of a source or version."""

    includeConcepts = fields.Boolean(load_default=False, metadata=_describe("Include concepts."))
    includeMappings = fields.Boolean(load_default=False, metadata=_describe("Include mappings."))
    includeRetired = fields.Boolean(load_default=False,
                                    metadata=_describe("Include retired items."))
    includeDeleted = fields.Boolean(
        load_default=False,
        metadata=_describe("Include tombstones of deleted items (termsync's subscriber sends it; "
                           "OCL clients do not, and cannot read tombstones)."))
    updatedSince = Timestamp(
        load_default=None, allow_none=True, example="2026-01-01T00:00:00Z",
        metadata=_describe("Only items updated at or after this ISO 8601 time (zone-less = UTC)."))
    limit = Limit(500, None,
                  metadata=_describe(f"Items per page (default 500, at most {CONTENT_LIMIT})."))
    cursor = fields.String(load_default=None, allow_none=True,
                           metadata=_describe("Opaque keyset cursor; follow the `next` header."))

    def unread_times(self, data: dict[str, Any]) -> frozenset[str]:
        """Without concepts or mappings asked for, the answer is the repository alone, which
        `updatedSince` does not narrow: it is ignored, whatever it says."""
        return frozenset() if data["includeConcepts"] or data["includeMappings"] else \
            frozenset({"updatedSince"})


class HardDeleteArgsSchema(QuerySchema):
    """Delete options."""

    hard = fields.Boolean(load_default=False,
                          metadata=_describe("Delete (leaving a tombstone) instead of retiring."))


class OutSchema(Schema):
    """Base of response schemas: OCL payloads carry more fields than documented here."""

    class Meta:
        unknown = INCLUDE


class NameOut(OutSchema):
    """A concept name; its uuid stays while it is the same (locale, type, text)."""

    uuid = fields.String()
    type = fields.String()
    name = fields.String()
    locale = fields.String()
    locale_preferred = fields.Boolean()
    name_type = fields.String(allow_none=True)
    external_id = fields.String(allow_none=True)


class DescriptionOut(OutSchema):
    """A concept description; its uuid stays while it is the same (locale, type, text)."""

    uuid = fields.String()
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
    uuid = fields.String(metadata=_describe("Names this item version; unique on the server."))
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
    mappings = fields.List(fields.Dict(), metadata=_describe(
        "With includeMappings (from it) or includeInverseMappings (from and to it)."))


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
    email = fields.String(allow_none=True, metadata=_describe(
        "Only to the user themself and admins; null to others."))
    company = fields.String(allow_none=True)
    is_admin = fields.Boolean()
    is_active = fields.Boolean(metadata=_describe(
        "Whether the account may sign in (only to the user themself and admins)."))
    url = fields.String()


class TokenInfoOut(OutSchema):
    """An API token as it is listed: never its value (shown once, when it is issued)."""

    id = fields.String(metadata=_describe("Names the token in its URL."))
    username = fields.String()
    url = fields.String()
    prefix = fields.String(allow_none=True, metadata=_describe(
        "The token's first characters, to tell it apart (none for tokens issued before they "
        "were kept)."))
    label = fields.String(allow_none=True)
    state = fields.String(metadata=_describe("active, expired or revoked."))
    created_on = fields.String()
    created_by = fields.String(allow_none=True, metadata=_describe(
        "Who issued it (null: the command line or ADMIN_TOKEN)."))
    expires_on = fields.String(allow_none=True, metadata=_describe("Null: never."))
    last_used_on = fields.String(allow_none=True, metadata=_describe(
        "When it was last used, to the minute (recorded at most once a minute)."))
    revoked_on = fields.String(allow_none=True)
    admin_token = fields.Boolean(metadata=_describe(
        "Issued from the ADMIN_TOKEN setting (a new value revokes it)."))


class TokenOut(TokenInfoOut):
    """A newly issued API token, with its value: shown this once."""

    token = fields.String(metadata=_describe("Send as 'Authorization: Token <token>'."))


class TokenIn(Schema):
    """A new API token: the server draws it (256 random bits) unless `token` brings one."""

    class Meta:
        unknown = EXCLUDE

    token = fields.String(load_default=None, allow_none=True, validate=validate.Regexp(
        rf"^[\x21-\x7e]{{{MIN_CHOSEN_TOKEN_LENGTH},{MAX_TOKEN_LENGTH}}}$",
        error=f"A token you choose must have {MIN_CHOSEN_TOKEN_LENGTH} to {MAX_TOKEN_LENGTH} "
              "visible ASCII characters (no spaces); leave it out to have the server draw one."),
        metadata=_describe(f"A token you choose ({MIN_CHOSEN_TOKEN_LENGTH}+ visible ASCII "
                           "characters); leave it out and the server draws one."))
    label = fields.String(load_default=None, allow_none=True, validate=validate.Length(max=200),
                          metadata=_describe("What the token is for (shown in lists)."))
    expires_on = Timestamp(load_default=None, allow_none=True, metadata=_describe(
        "When it stops working: an ISO 8601 time in the future (zone-less is UTC)."))
    expires_in_days = fields.Integer(load_default=None, allow_none=True,
                                     validate=validate.Range(min=1, max=36500),
                                     metadata=_describe("Or: how many days it works."))

    @validates_schema
    def _one_expiry(self, data: dict[str, Any], **kwargs: Any) -> None:
        if data.get("expires_on") is not None and data.get("expires_in_days") is not None:
            raise ValidationError("Give expires_on or expires_in_days, not both.",
                                  "expires_in_days")

    @post_load
    def _read_times(self, data: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        return read_times(self, data)  # a bad expires_on: 422 naming it, as any bad field


class TokenListArgsSchema(ListArgsSchema):
    """A user's tokens, newest first."""

    includeRevoked = fields.Boolean(load_default=False, metadata=_describe(
        "Also list revoked tokens."))

