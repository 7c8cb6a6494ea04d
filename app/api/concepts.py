"""Concepts: list and create on HEAD, read at any version, update, retire or delete; and a
concept's names and descriptions, each a list of its own."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flask import Response
from flask.views import MethodView
from marshmallow import Schema

from ..domain import ocl
from ..domain.content import Content
from ..domain.payloads import ConceptSchema, ConceptUpdateSchema
from ..model import CONCEPT
from .common import domain, json_response, owner_routes, paging_headers, resolve_source
from .docs import ViewSchema, configure, documented
from .items import item_blueprint
from .schemas import ConceptOut, DescriptionOut, NameOut

blp = item_blueprint(CONCEPT, ConceptSchema, ConceptUpdateSchema, ConceptOut,
                     save_item=Content.save_concept, update_item=Content.update_concept)


class Localized(MethodView):
    """A concept's names or descriptions in HEAD (`part`), as `render` gives them."""

    part: str
    out_schema: type[Schema]
    render: Callable[[str, list[dict[str, Any]]], list[dict[str, Any]]]

    @documented.response(200, ViewSchema("out_schema", many=True))
    @documented.errors(401, 404, 409)
    def get(self, source_id: str, item_id: str, owner_kind: str | None = None,
            owner_id: str | None = None) -> Response:
        """The {part} of a concept in HEAD, each with its uuid."""
        _, source = resolve_source(owner_kind, owner_id, source_id)
        content = domain().content
        item = content.get_item(source, content.head_version(source), CONCEPT, item_id)
        localized = self.render(item["url"], item["data"].get(self.part) or [])
        # never paged, yet with the paging headers of every list
        return json_response(localized, headers=paging_headers(len(localized), len(localized), None))


def add_localized_routes() -> None:
    """The routes of a concept's names and of its descriptions."""
    for part, schema, render in (("names", NameOut, ocl.render_names),
                                 ("descriptions", DescriptionOut, ocl.render_descriptions)):
        owner_routes(blp, f"sources/<source_id>/concepts/<item_id>/{part}/", f"concept_{part}")(
            configure(Localized, blp, part=part, out_schema=schema, render=staticmethod(render)))


add_localized_routes()
