"""Documentation helpers: every non-success answer is documented with the one error schema, and
one view class serves several blueprints (`configure`)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any, TypeVar

from flask.views import MethodView
from flask_smorest.error_handler import ErrorSchema

V = TypeVar("V", bound=MethodView)
# Where `Deferred` keeps the decorators it recorded on a method.
DEFERRED = "_deferred_docs"


def errors(blp: Any, *codes: int) -> Callable[[Any], Any]:
    """Document error responses (all in the {code, status, message, errors} shape)."""
    def decorator(view: Any) -> Any:
        for code in codes:
            view = blp.alt_response(code, schema=ErrorSchema,
                                    description=HTTPStatus(code).phrase)(view)
        return view
    return decorator


@dataclass(frozen=True)
class ViewSchema:
    """A schema named by an attribute a view is configured with (`out_schema`, see `configure`)."""

    attribute: str
    many: bool = False

    def of(self, attributes: dict[str, Any]) -> Any:
        """The schema the attributes name: its class, or an instance for a list (`many`)."""
        schema = attributes[self.attribute]
        return schema(many=True) if self.many else schema


class Deferred:
    """flask-smorest's view decorators, recorded on a method of a view class and applied by
    `configure` to each configured copy of it: one view class serves concepts and mappings, whose
    schemas (and blueprints) differ. Written as `@documented.response(...)` where `@blp.response`
    would be, in the same order."""

    def arguments(self, schema: Any, **options: Any) -> Callable[[Any], Any]:
        """`Blueprint.arguments`, deferred."""
        return self._record("arguments", schema, **options)

    def response(self, status: int, schema: Any = None) -> Callable[[Any], Any]:
        """`Blueprint.response`, deferred."""
        return self._record("response", status, schema)

    def errors(self, *codes: int) -> Callable[[Any], Any]:
        """`errors` (the one error schema for each code), deferred."""
        return self._record("errors", *codes)

    @staticmethod
    def _record(decorator: str, *args: Any, **options: Any) -> Callable[[Any], Any]:
        def record(method: Any) -> Any:
            method.__dict__.setdefault(DEFERRED, []).append((decorator, args, options))
            return method
        return record


documented = Deferred()


def configure(view: type[V], blp: Any, **attributes: Any) -> type[V]:
    """`view` with `attributes` as class attributes (what `View.as_view`'s arguments do for a
    plain Flask view), its methods decorated on `blp` as `documented` recorded them, with the
    schemas the attributes name, and their docstrings filled in from the attributes (`{noun}`)."""
    configured = type(view.__name__, (view,), attributes)
    for method in sorted(view.methods or ()):
        function = getattr(view, method.lower())
        decorated = function
        for decorator, args, options in getattr(function, DEFERRED, ()):
            args = tuple(arg.of(attributes) if isinstance(arg, ViewSchema) else arg for arg in args)
            options = {name: value.of(attributes) if isinstance(value, ViewSchema) else value
                       for name, value in options.items()}
            apply = errors(blp, *args) if decorator == "errors" else \
                getattr(blp, decorator)(*args, **options)
            decorated = apply(decorated)
        decorated.__doc__ = (function.__doc__ or "").format(**attributes)
        setattr(configured, method.lower(), decorated)
    return configured
