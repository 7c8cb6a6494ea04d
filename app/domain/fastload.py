"""A fast path through a marshmallow schema for input it accepts without question.

A bulk import loads hundreds of thousands of lines through the schemas of `payloads`, and
marshmallow's generality (an error store, a getter and a closure per field, hooks looked up on
every call) costs more than storing the line. `compile_schema` turns a schema instance, once,
into a plain function that returns exactly what `schema.load` returns, or raises `Unsure` as
soon as a value is anything but plainly valid: a string where a boolean goes, a missing required
field, a validator's or a hook's error. The caller then runs marshmallow itself, which finds the
same answer and words the errors. So the schemas stay the one statement of what is valid, and
what the compiler does not understand (a schema-level validator, a field hook, `partial`,
unknown fields that are not excluded) makes it decline: `compile_schema` returns None and every
load goes through marshmallow.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from marshmallow import EXCLUDE, Schema, ValidationError, fields, missing
from marshmallow.decorators import POST_LOAD, PRE_LOAD, VALIDATES, VALIDATES_SCHEMA

Loader = Callable[[Any], Any]


class Unsure(Exception):
    """The fast path cannot vouch for this input: run marshmallow."""


class Declined(Exception):
    """A schema uses something the compiler does not translate."""


def compile_schema(schema: Schema) -> Loader | None:
    """`schema.load` for input it accepts as it is, or None where the schema is beyond this
    module (then marshmallow does every load)."""
    try:
        return _schema_loader(schema)
    except Declined:
        return None


def _hooks(schema: Schema, tag: str) -> list[Callable[..., Any]]:
    hooks = []
    for name, pass_collection, options in schema._hooks[tag]:
        if pass_collection or options.get("pass_original"):
            raise Declined(f"{type(schema).__name__}.{name}")
        hooks.append(getattr(schema, name))
    return hooks


def _schema_loader(schema: Schema) -> Loader:
    if schema.many or schema.partial or schema.unknown != EXCLUDE or schema._hooks[VALIDATES] \
            or schema._hooks[VALIDATES_SCHEMA]:
        raise Declined(type(schema).__name__)
    pre, post = _hooks(schema, PRE_LOAD), _hooks(schema, POST_LOAD)
    plan = []
    for name, field in schema.load_fields.items():
        if field.attribute not in (None, name) or "." in name:
            raise Declined(name)
        plan.append((name, field.data_key or name, _field_loader(field, name)))
    unknown = schema.unknown

    def load(data: Any) -> Any:
        for hook in pre:
            data = _checked(hook, data, unknown)
        if type(data) is not dict:
            raise Unsure
        result: dict[str, Any] = {}
        for name, key, load_field in plan:
            value = load_field(data.get(key, missing), data)
            if value is not missing:
                result[name] = value
        for hook in post:
            result = _checked(hook, result, unknown)
        return result

    return load


def _checked(hook: Callable[..., Any], data: Any, unknown: str) -> Any:
    try:
        return hook(data, many=False, partial=None, unknown=unknown)
    except ValidationError:
        raise Unsure from None


def _field_loader(field: fields.Field[Any], name: str) -> Callable[[Any, Any], Any]:
    """A field's `deserialize` (missing, None, the value, its validators) as one function."""
    if field.pre_load or field.post_load:
        raise Declined(name)
    convert = _converter(field, name)
    validators = list(field.validators)
    required, allow_none, default = field.required, field.allow_none, field.load_default

    def load(value: Any, data: Any) -> Any:
        if value is missing:
            if required:
                raise Unsure
            return default() if callable(default) else default
        if value is None:
            if allow_none:
                return None
            raise Unsure
        output = convert(value, data)
        for validator in validators:
            try:
                if validator(output) is False:
                    raise Unsure
            except ValidationError:
                raise Unsure from None
        return output

    return load


def _converter(field: fields.Field[Any], name: str) -> Callable[[Any, Any], Any]:
    """The field's `_deserialize`: inlined for the plain types, marshmallow's own for the rest
    (a custom field's `_deserialize` is its whole conversion)."""
    def custom(value: Any, data: Any) -> Any:
        try:
            return field._deserialize(value, name, data)
        except ValidationError:
            raise Unsure from None

    kind = type(field)
    if kind is fields.String:
        def string(value: Any, data: Any) -> Any:
            if type(value) is not str:
                raise Unsure
            return value
        return string
    if kind is fields.Boolean:
        def boolean(value: Any, data: Any) -> Any:
            if value is True or value is False:
                return value
            return custom(value, data)  # "True", "0", ...: the field's own tables
        return boolean
    if kind is fields.List and isinstance(field, fields.List):
        inner = _field_loader(field.inner, name)

        def listed(value: Any, data: Any) -> Any:
            if type(value) is not list:
                raise Unsure
            return [inner(item, data) for item in value]
        return listed
    if kind is fields.Nested and isinstance(field, fields.Nested):
        if field.many or field.unknown not in (None, EXCLUDE):
            raise Declined(name)
        nested = _schema_loader(field.schema)
        return lambda value, data: nested(value)

    return custom
