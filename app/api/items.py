"""Concepts and mappings share one set of routes: view classes that `item_blueprint` configures
with the item type they serve and its schemas."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import quote

from flask import Response
from flask.views import MethodView
from marshmallow import Schema

from ..domain import ocl
from ..domain.values import INT64_MAX
from ..model import CONCEPT, ItemFilters, Source, Version
from .common import (
    current_caller,
    domain,
    json_response,
    list_response,
    owner_routes,
    render_item,
    resolve_source,
)
from .docs import ViewSchema, configure, documented
from .parsing import Blueprint
from .schemas import (
    ConceptArgsSchema,
    HardDeleteArgsSchema,
    HistoryArgsSchema,
    ItemListArgsSchema,
)
from .sources import repo_filters


def render_concept_with(args: dict[str, Any], source: Source, version: Version,
                        item: dict[str, Any]) -> dict[str, Any]:
    """A concept, with `mappings` when includeMappings / includeInverseMappings ask for them."""
    rendered = render_item(item, source)
    if args.get("includeMappings") or args.get("includeInverseMappings"):
        mappings = domain().content.concept_mappings(
            source, version, item, inverse=bool(args.get("includeInverseMappings")),
            include_retired=bool(args.get("includeRetired")))
        rendered["mappings"] = [render_item(mapping, source) for mapping in mappings]
    return rendered


def render_read(args: dict[str, Any], source: Source, version: Version,
                item: dict[str, Any]) -> dict[str, Any]:
    """An item as read, alone or in a list: a concept with its mappings when `args` ask for them."""
    if item["type"] == CONCEPT:
        return render_concept_with(args, source, version, item)
    return render_item(item, source)


def _values(text: str | None) -> tuple[str, ...]:
    return tuple(value.strip() for value in (text or "").split(",") if value.strip())


def _concept_end(value: str | None) -> str | None:
    """A concept named by id or url, as its id appears in urls (%-quoted)."""
    if not value:
        return None
    if value.startswith("/"):
        value = value.rstrip("/").rsplit("/", 1)[-1]
        return value
    return quote(value, safe="")


def item_filters(args: dict[str, Any]) -> tuple[ItemFilters, str | None]:
    """OCL's concept and mapping search parameters as the store's filters, and `updatedSince`."""
    filters = ItemFilters(
        q=args.get("q") or None, concept_class=_values(args.get("conceptClass")),
        datatype=_values(args.get("datatype")), locale=_values(args.get("locale")),
        map_type=_values(args.get("mapType")), from_concept=_concept_end(args.get("fromConcept")),
        from_source=args.get("fromConceptSource") or None,
        from_owner=args.get("fromConceptOwner") or None,
        to_concept=_concept_end(args.get("toConcept")),
        to_source=args.get("toConceptSource") or None,
        to_owner=args.get("toConceptOwner") or None)
    return filters, args.get("updatedSince")


class ItemView(MethodView):
    """A route of a source's concepts or mappings; `item_blueprint` configures which (`configure`):
    the item type, the noun its docstrings say, its schemas and the domain's writes of it."""

    item_type: str
    noun: str
    create_schema: type[Schema]
    update_schema: type[Schema]
    out_schema: type[Schema]
    save_item: Callable[..., tuple[str, dict[str, Any]]]  # Content.save_concept or save_mapping
    update_item: Callable[..., tuple[str, dict[str, Any]]]

    def list_items(self, args: dict[str, Any], source: Source,
                   version: Version) -> Response:
        """One page of the items of `version`, as `args` narrow them."""
        filters, since = item_filters(args)
        return list_response(args, lambda skip, limit: domain().content.list_items(
            source, version, self.item_type, args["includeRetired"], skip, limit, filters, since),
            lambda item: render_read(args, source, version, item))

    def update(self, changes: dict[str, Any], source_id: str, item_id: str,
               owner_kind: str | None, owner_id: str | None) -> Response:
        """Change an item in HEAD (PUT and PATCH alike)."""
        _, source = resolve_source(owner_kind, owner_id, source_id)
        item = self.update_item(domain().content, current_caller(), source, item_id, changes)[1]
        return json_response(render_item(item, source))


class ItemSearch(ItemView):
    """The items of every source the caller may see."""

    @documented.arguments(ItemListArgsSchema, location="query", error_status_code=400)
    @documented.response(200, ViewSchema("out_schema", many=True))
    @documented.errors(400, 401)
    def get(self, args: dict[str, Any]) -> Response:
        """Search the {noun}s of every source the caller may see (HEAD), by type then id (`q`, `owner`, ... narrow it)."""  # noqa: E501
        filters, since = item_filters(args)
        content = domain().content
        sources: dict[str, Source] = {}

        def render(item: dict[str, Any]) -> dict[str, Any]:
            if item["source"] not in sources:
                found = content.find_repo(item["source"])
                assert found is not None  # an item's source is never deleted before it
                sources[item["source"]] = found
            source = sources[item["source"]]
            return render_read(args, source, content.head_version(source), item)

        return list_response(args, lambda skip, limit: content.search_items(
            current_caller(), self.item_type, args["includeRetired"], filters,
            repo_filters({"owner": args.get("owner"), "ownerType": args.get("ownerType")}),
            skip, limit, since), render)


class Items(ItemView):
    """The items of a source's HEAD."""

    @documented.arguments(ItemListArgsSchema, location="query", error_status_code=400)
    @documented.response(200, ViewSchema("out_schema", many=True))
    @documented.errors(400, 401, 404)
    def get(self, args: dict[str, Any], source_id: str, owner_kind: str | None = None,
            owner_id: str | None = None) -> Response:
        """List the {noun}s of HEAD, by id."""
        _, source = resolve_source(owner_kind, owner_id, source_id)
        return self.list_items(args, source, domain().content.head_version(source))

    @documented.arguments(ViewSchema("create_schema"))
    @documented.response(201, ViewSchema("out_schema"))
    @documented.errors(401, 403, 404, 405, 409, 422)
    def post(self, payload: dict[str, Any], source_id: str, owner_kind: str | None = None,
             owner_id: str | None = None) -> Response:
        """Create a {noun} in HEAD."""
        _, source = resolve_source(owner_kind, owner_id, source_id)
        _, item = self.save_item(domain().content, current_caller(), source, payload, expect="new")
        return json_response(render_item(item, source), 201, {"Location": item["url"]})


class VersionItems(ItemView):
    """The items of a version of a source."""

    @documented.arguments(ItemListArgsSchema, location="query", error_status_code=400)
    @documented.response(200, ViewSchema("out_schema", many=True))
    @documented.errors(400, 401, 404)
    def get(self, args: dict[str, Any], source_id: str, version_id: str,
            owner_kind: str | None = None, owner_id: str | None = None) -> Response:
        """List the {noun}s of a version, by id."""
        _, source = resolve_source(owner_kind, owner_id, source_id)
        return self.list_items(args, source, domain().content.get_version(source, version_id))


class Item(ItemView):
    """One item in HEAD: read, change, retire or delete it."""

    @documented.arguments(ConceptArgsSchema, location="query", error_status_code=400)
    @documented.response(200, ViewSchema("out_schema"))
    @documented.errors(400, 401, 404, 409)
    def get(self, args: dict[str, Any], source_id: str, item_id: str,
            owner_kind: str | None = None, owner_id: str | None = None) -> Response:
        """A {noun} as it is in HEAD."""
        _, source = resolve_source(owner_kind, owner_id, source_id)
        head = domain().content.head_version(source)
        item = domain().content.get_item(source, head, self.item_type, item_id)
        return json_response(render_read(args, source, head, item))

    @documented.arguments(ViewSchema("update_schema"))
    @documented.response(200, ViewSchema("out_schema"))
    @documented.errors(401, 403, 404, 405, 409, 422)
    def put(self, changes: dict[str, Any], source_id: str, item_id: str,
            owner_kind: str | None = None, owner_id: str | None = None) -> Response:
        """Change a {noun} in HEAD (given fields replace stored ones)."""
        return self.update(changes, source_id, item_id, owner_kind, owner_id)

    @documented.arguments(ViewSchema("update_schema"))
    @documented.response(200, ViewSchema("out_schema"))
    @documented.errors(401, 403, 404, 405, 409, 422)
    def patch(self, changes: dict[str, Any], source_id: str, item_id: str,
              owner_kind: str | None = None, owner_id: str | None = None) -> Response:
        """Change some fields of a {noun} in HEAD."""
        return self.update(changes, source_id, item_id, owner_kind, owner_id)

    @documented.arguments(HardDeleteArgsSchema, location="query", error_status_code=400)
    @documented.response(204)
    @documented.errors(400, 401, 403, 404, 405, 409)
    def delete(self, args: dict[str, Any], source_id: str, item_id: str,
               owner_kind: str | None = None, owner_id: str | None = None) -> Response:
        """Retire a {noun}, or delete it with hard=true (leaves a tombstone)."""
        _, source = resolve_source(owner_kind, owner_id, source_id)
        domain().content.delete_item(current_caller(), source, self.item_type, item_id, args["hard"])
        return Response(status=204)


class VersionItem(ItemView):
    """One item as a version of its source holds it."""

    @documented.arguments(ConceptArgsSchema, location="query", error_status_code=400)
    @documented.response(200, ViewSchema("out_schema"))
    @documented.errors(400, 401, 404, 409)
    def get(self, args: dict[str, Any], source_id: str, version_id: str, item_id: str,
            owner_kind: str | None = None, owner_id: str | None = None) -> Response:
        """A {noun} as it is in a version."""
        _, source = resolve_source(owner_kind, owner_id, source_id)
        version = domain().content.get_version(source, version_id)
        item = domain().content.get_item(source, version, self.item_type, item_id)
        return json_response(render_read(args, source, version, item))


class ItemVersion(ItemView):
    """One version of an item, by its number."""

    @documented.response(200, ViewSchema("out_schema"))
    @documented.errors(401, 404, 409)
    def get(self, source_id: str, item_id: str, item_version: int,
            owner_kind: str | None = None, owner_id: str | None = None) -> Response:
        """One version of a {noun}: what its `version_url` names."""
        _, source = resolve_source(owner_kind, owner_id, source_id)
        item = domain().content.get_item_version(source, self.item_type, item_id, item_version)
        return json_response(render_item(item, source))


class ItemHistory(ItemView):
    """The versions of an item."""

    @documented.arguments(HistoryArgsSchema, location="query", error_status_code=400)
    @documented.response(200, ViewSchema("out_schema", many=True))
    @documented.errors(400, 401, 404, 409)
    def get(self, args: dict[str, Any], source_id: str, item_id: str,
            owner_kind: str | None = None, owner_id: str | None = None) -> Response:
        """The versions of a {noun}, newest first (its history)."""
        _, source = resolve_source(owner_kind, owner_id, source_id)
        return list_response(args, lambda skip, limit: domain().content.item_history(
            source, self.item_type, item_id, skip, limit), lambda item: render_item(item, source))


class ItemExtras(ItemView):
    """The extras of an item in HEAD."""

    @documented.response(200, {"type": "object"})
    @documented.errors(401, 404, 409)
    def get(self, source_id: str, item_id: str, owner_kind: str | None = None,
            owner_id: str | None = None) -> Response:
        """The extras (custom attributes) of a {noun} in HEAD."""
        _, source = resolve_source(owner_kind, owner_id, source_id)
        content = domain().content
        item = content.get_item(source, content.head_version(source), self.item_type, item_id)
        return json_response(item["data"].get("extras") or {})


def item_blueprint(item_type: str, create_schema: type[Schema], update_schema: type[Schema],
                   out_schema: type[Schema], save_item: Callable[..., tuple[str, dict[str, Any]]],
                   update_item: Callable[..., tuple[str, dict[str, Any]]]) -> Blueprint:
    """Routes for concepts or mappings: list and create on HEAD, read at any version, write HEAD."""
    path = ocl.ITEM_PATHS[item_type]
    noun = item_type.lower()
    blp = Blueprint(path, __name__, description=f"{item_type}s of a source (writes go to HEAD).")

    def view(cls: type[ItemView]) -> type[ItemView]:
        return configure(cls, blp, item_type=item_type, noun=noun, create_schema=create_schema,
                         update_schema=update_schema, out_schema=out_schema,
                         save_item=staticmethod(save_item), update_item=staticmethod(update_item))

    blp.route(f"/{path}/", endpoint=f"all_{path}")(view(ItemSearch))
    item = f"sources/<source_id>/{path}/<item_id>/"
    owner_routes(blp, f"sources/<source_id>/{path}/", path)(view(Items))
    owner_routes(blp, f"sources/<source_id>/<version_id>/{path}/", f"version_{path}")(view(VersionItems))
    owner_routes(blp, item, noun)(view(Item))
    owner_routes(blp, f"sources/<source_id>/<version_id>/{path}/<item_id>/",
                 f"version_{noun}")(view(VersionItem))
    # A number past 64 bits names no version (storage holds no larger one): 404, never a 500.
    owner_routes(blp, f"{item}<int(max={INT64_MAX}):item_version>/", f"{noun}_version")(view(ItemVersion))
    owner_routes(blp, f"{item}versions/", f"{noun}_history")(view(ItemHistory))
    owner_routes(blp, f"{item}extras/", f"{noun}_extras")(view(ItemExtras))
    return blp
