"""Request arguments as every blueprint reads them (docs/security.md, Input).

A JSON body is read by `values.loads` (a key given twice is a 400 naming it; NaN, Infinity and
numbers past a float's range reach the schema as values no field takes), and whatever a schema
loads, from the body, the query or a form, is held to `values.problems`: a value that cannot be
stored and read back exactly is a 422 (400 for query arguments) naming the field. Every
flask-smorest blueprint of the app is this module's `Blueprint`.
"""

from __future__ import annotations

from typing import Any

import flask_smorest
from flask import Request
from marshmallow import ValidationError, missing
from webargs.flaskparser import FlaskParser, is_json_request

from ..domain import values
from ..domain.errors import Invalid


class ArgumentsParser(FlaskParser):
    """webargs' Flask parser with termsync's JSON reading and storable-value rule."""

    def _raw_load_json(self, req: Request) -> Any:
        if not is_json_request(req):
            return missing
        try:
            return values.loads(req.get_data(cache=True))
        except values.TooDeep:
            message = "The request body is nested too deeply to read."
            raise Invalid(message, errors={"json": [message]}) from None
        except values.NotJSON as exc:
            message = f"The request body is not valid JSON: {exc}."
            raise Invalid(message, errors={"json": [message]}) from None

    def _validate_arguments(self, data: Any, validators: Any) -> None:
        found = values.problems(data)
        if found:
            raise ValidationError(values.as_messages(found))
        super()._validate_arguments(data, validators)


class Blueprint(flask_smorest.Blueprint):
    """flask-smorest's Blueprint reading its arguments with `ArgumentsParser`."""

    ARGUMENTS_PARSER = ArgumentsParser()
