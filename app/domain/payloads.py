"""Marshmallow schemas for OCL payloads: the one place that validates what curators send.

Both the HTTP layer (request bodies) and the line loader (import files) load through these, so a
bad concept gets the same message whichever way it arrives. Unknown fields are ignored and
booleans may come as strings ("True"), as OCL accepts them.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote, unquote

from marshmallow import EXCLUDE, Schema, ValidationError, fields, post_load, pre_load, validate

from . import values
from .fastload import Unsure, compile_schema

ACCESS_CHOICES = ("View", "Edit", "None")
# OCL's NAMESPACE_REGEX (oclapi2, core/common/constants.py) for orgs, users, sources,
# collections, versions and mappings, without '.' and '..' (a URL path cannot hold them). It is
# also the OpenAPI document's pattern, so it is written as JavaScript reads it: Python's `$` also
# matches before a final newline, which `_line` refuses.
NAMESPACE = r"^(?!\.\.?$)[A-Za-z0-9_.@-]+$"
NAMESPACE_ERROR = "Use letters, digits, '_', '-', '.', '@' ('.' or '..' alone is not an id)."
# A float carries every integer up to 2**53 exactly; past that, one that was sent reads back as
# another.
EXACT_FLOAT_INTEGER = 2 ** 53


def _describe(text: str) -> dict[str, str]:
    return {"description": text}


def mnemonic(*extra: Any, max_length: int = 128) -> list[Any]:
    """Validators of an id that appears in URLs as it is (orgs, users, sources, versions,
    mappings): OCL's namespace characters."""
    return [validate.Length(min=1, max=max_length),
            validate.Regexp(NAMESPACE, error=NAMESPACE_ERROR), _line, *extra]


def _line(value: str) -> None:
    """No control character (a newline after an id would pass the pattern's `$`)."""
    problem = values.line_problem(value)
    if problem is not None:
        raise ValidationError(problem)


def _concept_id(value: str) -> None:
    """A concept id is any text but control characters, '.' and '..' (its URL %-quotes it)."""
    problem = values.id_problem(value)
    if problem is not None:
        raise ValidationError(problem)


# MongoDB refuses documents nested deeper than 100 levels; extras sit a few levels down.
MAX_EXTRAS_DEPTH = 32


def _check_keys(value: Any, path: str = "extras", depth: int = 0) -> None:
    """What a document database can store: keys without a leading '$', bounded nesting (values
    and the characters of keys: `values.problems`, for every field)."""
    if depth > MAX_EXTRAS_DEPTH:
        raise ValidationError(f"{path}: nested deeper than {MAX_EXTRAS_DEPTH} levels.")
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str) or key.startswith("$"):
                raise ValidationError(f"{path}: key {key!r} may not start with '$'.")
            _check_keys(item, f"{path}.{key}", depth + 1)
    elif isinstance(value, list):
        for item in value:
            _check_keys(item, path, depth + 1)


class Extras(fields.Dict):
    """OCL's free-form `extras` object, with keys MongoDB can store."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> Any:
        result = super()._deserialize(value, attr, data, **kwargs)  # type: ignore[no-untyped-call]
        _check_keys(result)
        return result


class Weight(fields.Float):
    """A mapping's `sort_weight`: a finite number that reads back as it was sent."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> Any:
        if isinstance(value, values.NotANumber):
            raise ValidationError(values.number_problem(value) or "Not a number.")
        if type(value) is int and abs(value) > EXACT_FLOAT_INTEGER:
            raise ValidationError(f"{value} has more digits than a float keeps exactly.")
        return super()._deserialize(value, attr, data, **kwargs)


class LocaleList(fields.Field[Any]):
    """A list of locales; OCL files also send one comma-separated string."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> list[str]:
        if value is None:
            return []
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        if isinstance(value, list) and all(isinstance(part, str) for part in value):
            return value
        raise ValidationError("Expected a list of locales or a comma-separated string.")

    def _serialize(self, value: Any, attr: str | None, obj: Any, **kwargs: Any) -> Any:
        return value


class OclSchema(Schema):
    """Base: ignore unknown fields, as OCL does. A plain `load` tries the schema's compiled
    fast path first (`fastload`: the same result for input valid as it is) and runs
    marshmallow for anything else, so errors are always marshmallow's."""

    class Meta:
        unknown = EXCLUDE

    def load(self, data: Any, *, many: bool | None = None, partial: Any = None,
             unknown: Any = None) -> Any:
        if many is None and partial is None and unknown is None:
            fast = self.__dict__.get("_fast_load", False)
            if fast is False:
                fast = self.__dict__["_fast_load"] = compile_schema(self)
            if fast is not None:
                try:
                    return fast(data)
                except Unsure:
                    pass
        return super().load(data, many=many, partial=partial, unknown=unknown)

    @post_load
    def _storable(self, data: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        """Refuse, naming the field, what cannot be stored and read back exactly."""
        found = values.problems(data)
        if found:
            raise ValidationError(values.as_messages(found))
        return data


def concept_id_from(value: str) -> str:
    """OCL keeps the last path segment of a concept id containing '/' (see DemoSource's Papaya);
    trailing slashes end no segment ('a/' is 'a'), so an id never holds a '/'."""
    return value.rstrip("/").rsplit("/", 1)[-1]


def normalize_concept_url(url: str | None) -> str | None:
    """Canonical form of a concept URL: decoded id, last segment only, trailing slash."""
    if not url:
        return url
    marker = "/concepts/"
    if marker not in url:
        return url if url.endswith("/") else url + "/"
    head, _, tail = url.partition(marker)
    concept_id = concept_id_from(unquote(tail.rstrip("/")))
    return f"{head}{marker}{quote(concept_id, safe='')}/"


class LocalizedTextSchema(OclSchema):
    """Fields a concept's names and descriptions share."""

    locale = fields.String(required=True, validate=validate.Length(min=1),
                           metadata=_describe("Locale code, e.g. 'en'."))
    locale_preferred = fields.Boolean(load_default=False, allow_none=True)
    external_id = fields.String(load_default=None, allow_none=True)

    @post_load
    def _fill(self, data: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        data["locale_preferred"] = bool(data.get("locale_preferred"))
        return data


class NameSchema(LocalizedTextSchema):
    """A concept name."""

    name = fields.String(required=True, validate=validate.Length(min=1),
                         metadata=_describe("The name text."))
    name_type = fields.String(load_default=None, allow_none=True,
                              metadata=_describe("e.g. 'Fully Specified', 'Short'."))


class DescriptionSchema(LocalizedTextSchema):
    """A concept description."""

    description = fields.String(required=True, metadata=_describe("The description text."))
    description_type = fields.String(load_default=None, allow_none=True)


class ConceptSchema(OclSchema):
    """A concept as OCL sends it (create or full replace)."""

    id = fields.String(required=True, validate=[validate.Length(min=1, max=255), _concept_id],
                       metadata=_describe("Concept id, unique in its source: any text but "
                                          "control characters, '.' and '..'."))
    concept_class = fields.String(required=True, validate=validate.Length(min=1),
                                  metadata=_describe("e.g. 'Diagnosis'."))
    datatype = fields.String(load_default="None", allow_none=True,
                             metadata=_describe("e.g. 'Coded', 'N/A', 'None'."))
    names = fields.List(fields.Nested(NameSchema), required=True,
                        validate=validate.Length(min=1, error="A concept needs at least one name."))
    descriptions = fields.List(fields.Nested(DescriptionSchema), load_default=list, allow_none=True)
    retired = fields.Boolean(load_default=False, allow_none=True)
    external_id = fields.String(load_default=None, allow_none=True)
    extras = Extras(load_default=dict, allow_none=True)
    parent_concept_urls = fields.List(fields.String(), load_default=list, allow_none=True)
    update_comment = fields.String(load_default=None, allow_none=True)

    @pre_load
    def _coerce_id(self, data: Any, **kwargs: Any) -> Any:
        if isinstance(data, dict) and type(data.get("id")) is int:
            data = dict(data, id=str(data["id"]))
        if isinstance(data, dict) and isinstance(data.get("id"), str):
            data = dict(data, id=concept_id_from(data["id"]))
        return data

    @post_load
    def _fill(self, data: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        data["retired"] = bool(data.get("retired"))
        data["datatype"] = data.get("datatype") or "None"
        data["descriptions"] = data.get("descriptions") or []
        data["extras"] = data.get("extras") or {}
        data["parent_concept_urls"] = data.get("parent_concept_urls") or []
        return data


class ConceptUpdateSchema(OclSchema):
    """A concept update: every field optional; given fields replace the stored ones."""

    concept_class = fields.String(validate=validate.Length(min=1))
    datatype = fields.String(allow_none=True)
    names = fields.List(fields.Nested(NameSchema),
                        validate=validate.Length(min=1, error="A concept needs at least one name."))
    descriptions = fields.List(fields.Nested(DescriptionSchema), allow_none=True)
    retired = fields.Boolean(allow_none=True)
    external_id = fields.String(allow_none=True)
    extras = Extras(allow_none=True)
    parent_concept_urls = fields.List(fields.String(), allow_none=True)
    update_comment = fields.String(allow_none=True)

    @post_load
    def _fill(self, data: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        if "retired" in data:
            data["retired"] = bool(data["retired"])
        return data


class MappingSchema(OclSchema):
    """A mapping as OCL sends it."""

    id = fields.String(load_default=None, allow_none=True, validate=mnemonic(max_length=255),
                       metadata=_describe("Mapping id; the next free number when absent."))
    map_type = fields.String(required=True, validate=validate.Length(min=1),
                             metadata=_describe("e.g. 'SAME-AS', 'Has Child'."))
    from_concept_url = fields.String(required=True, validate=validate.Length(min=1))
    to_concept_url = fields.String(load_default=None, allow_none=True)
    to_source_url = fields.String(load_default=None, allow_none=True)
    to_concept_code = fields.String(load_default=None, allow_none=True)
    to_concept_name = fields.String(load_default=None, allow_none=True)
    retired = fields.Boolean(load_default=False, allow_none=True)
    external_id = fields.String(load_default=None, allow_none=True)
    extras = Extras(load_default=dict, allow_none=True)
    sort_weight = Weight(load_default=None, allow_none=True)
    update_comment = fields.String(load_default=None, allow_none=True)

    @pre_load
    def _coerce_id(self, data: Any, **kwargs: Any) -> Any:
        if isinstance(data, dict):
            data = dict(data)
            for key in ("id", "to_concept_code"):
                if type(data.get(key)) is int:
                    data[key] = str(data[key])
        return data

    @post_load
    def _fill(self, data: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        data["retired"] = bool(data.get("retired"))
        data["extras"] = data.get("extras") or {}
        data["from_concept_url"] = normalize_concept_url(data["from_concept_url"])
        if data.get("to_concept_url"):
            data["to_concept_url"] = normalize_concept_url(data["to_concept_url"])
        elif data.get("to_source_url") and data.get("to_concept_code"):
            source_url = data["to_source_url"]
            data["to_source_url"] = source_url if source_url.endswith("/") else source_url + "/"
        else:
            raise ValidationError(
                "A mapping needs to_concept_url, or to_source_url with to_concept_code.",
                field_name="to_concept_url")
        return data


class MappingUpdateSchema(OclSchema):
    """A mapping update: map_type, target, retired, extras and ids may change."""

    map_type = fields.String(validate=validate.Length(min=1))
    to_concept_url = fields.String(allow_none=True)
    to_source_url = fields.String(allow_none=True)
    to_concept_code = fields.String(allow_none=True)
    to_concept_name = fields.String(allow_none=True)
    retired = fields.Boolean(allow_none=True)
    external_id = fields.String(allow_none=True)
    extras = Extras(allow_none=True)
    sort_weight = Weight(allow_none=True)
    update_comment = fields.String(allow_none=True)

    @post_load
    def _fill(self, data: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        if "retired" in data:
            data["retired"] = bool(data["retired"])
        if data.get("to_concept_url"):
            data["to_concept_url"] = normalize_concept_url(data["to_concept_url"])
        return data


class SourceSchema(OclSchema):
    """A source as OCL sends it."""

    id = fields.String(required=True, validate=mnemonic())
    short_code = fields.String(load_default=None, allow_none=True)
    name = fields.String(load_default=None, allow_none=True)
    full_name = fields.String(load_default=None, allow_none=True)
    description = fields.String(load_default=None, allow_none=True)
    source_type = fields.String(load_default=None, allow_none=True)
    default_locale = fields.String(load_default="en", allow_none=True)
    supported_locales = LocaleList(load_default=list, allow_none=True)
    public_access = fields.String(load_default="View", validate=validate.OneOf(ACCESS_CHOICES))
    website = fields.String(load_default=None, allow_none=True)
    custom_validation_schema = fields.String(load_default=None, allow_none=True)
    external_id = fields.String(load_default=None, allow_none=True)
    extras = Extras(load_default=dict, allow_none=True)


class CollectionSchema(SourceSchema):
    """A collection as OCL sends it (a source's fields, with a collection's own)."""

    collection_type = fields.String(load_default=None, allow_none=True,
                                    metadata=_describe("e.g. 'Dictionary', 'Value Set'."))
    canonical_url = fields.String(load_default=None, allow_none=True)
    preferred_source = fields.String(load_default=None, allow_none=True)
    custom_resources_linked_source = fields.String(load_default=None, allow_none=True)
    immutable = fields.Boolean(load_default=None, allow_none=True)
    locked_date = fields.String(load_default=None, allow_none=True)


class ExpressionListSchema(OclSchema):
    """OCL's `data` of a reference: the expressions to add."""

    expressions = fields.List(fields.String(), required=True,
                              validate=validate.Length(min=1, error="No expressions."))


class ReferenceLineSchema(OclSchema):
    """A `Reference` line of a bulk import (OCL's format): expressions to add to a collection
    named by owner, owner_type and collection, or by collection_url."""

    data = fields.Nested(ExpressionListSchema, required=True)
    collection = fields.String(load_default=None, allow_none=True)
    collection_url = fields.String(load_default=None, allow_none=True)
    cascade = fields.String(load_default=None, allow_none=True, data_key="__cascade",
                            metadata=_describe("sourcemappings or sourcetoconcepts"))


class SourceUpdateSchema(OclSchema):
    """Fields of a source (or collection: its own as well) that may change."""

    name = fields.String(allow_none=True)
    full_name = fields.String(allow_none=True)
    description = fields.String(allow_none=True)
    source_type = fields.String(allow_none=True)
    default_locale = fields.String(allow_none=True)
    supported_locales = LocaleList(allow_none=True)
    public_access = fields.String(validate=validate.OneOf(ACCESS_CHOICES))
    website = fields.String(allow_none=True)
    custom_validation_schema = fields.String(allow_none=True)
    external_id = fields.String(allow_none=True)
    extras = Extras(allow_none=True)
    collection_type = fields.String(allow_none=True, metadata=_describe("Collections only."))
    canonical_url = fields.String(allow_none=True, metadata=_describe("Collections only."))
    preferred_source = fields.String(allow_none=True, metadata=_describe("Collections only."))
    custom_resources_linked_source = fields.String(allow_none=True,
                                                   metadata=_describe("Collections only."))
    immutable = fields.Boolean(allow_none=True, metadata=_describe("Collections only."))
    locked_date = fields.String(allow_none=True, metadata=_describe("Collections only."))


class VersionSchema(OclSchema):
    """A source version to cut from HEAD."""

    id = fields.String(required=True, validate=mnemonic(
        validate.NoneOf(("HEAD", "latest", "versions", "concepts", "mappings", "export",
                         "references"),
                        error="This id is reserved.")))
    description = fields.String(load_default=None, allow_none=True)
    released = fields.Boolean(load_default=False, allow_none=True)
    retired = fields.Boolean(load_default=False, allow_none=True)
    external_id = fields.String(load_default=None, allow_none=True)
    extras = Extras(load_default=dict, allow_none=True)

    @post_load
    def _fill(self, data: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        data["released"] = bool(data.get("released"))
        data["retired"] = bool(data.get("retired"))
        return data


class VersionUpdateSchema(OclSchema):
    """Fields of a version that may change (its content never does)."""

    description = fields.String(allow_none=True)
    released = fields.Boolean()
    retired = fields.Boolean()
    external_id = fields.String(allow_none=True)
    extras = Extras(allow_none=True)


class OrganizationSchema(OclSchema):
    """An organization as OCL sends it."""

    id = fields.String(required=True, validate=mnemonic())
    name = fields.String(load_default=None, allow_none=True)
    company = fields.String(load_default=None, allow_none=True)
    website = fields.String(load_default=None, allow_none=True)
    location = fields.String(load_default=None, allow_none=True)
    public_access = fields.String(load_default="View", validate=validate.OneOf(ACCESS_CHOICES))
    extras = Extras(load_default=dict, allow_none=True)


class UserSchema(OclSchema):
    """A user account (admins create them)."""

    username = fields.String(required=True, validate=mnemonic())
    name = fields.String(load_default=None, allow_none=True)
    email = fields.String(load_default=None, allow_none=True)
    company = fields.String(load_default=None, allow_none=True)
    is_admin = fields.Boolean(load_default=False)
