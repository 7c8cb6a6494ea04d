"""Documentation helpers: every non-success answer is documented with the one error schema."""

from __future__ import annotations

from collections.abc import Callable
from http import HTTPStatus
from typing import Any

from flask_smorest.error_handler import ErrorSchema


def errors(blp: Any, *codes: int) -> Callable[[Any], Any]:
    """Document error responses (all in the {code, status, message, errors} shape)."""
    def decorator(view: Any) -> Any:
        for code in codes:
            view = blp.alt_response(code, schema=ErrorSchema,
                                    description=HTTPStatus(code).phrase)(view)
        return view
    return decorator
