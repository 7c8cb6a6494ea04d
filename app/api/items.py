"""Concepts and mappings share one set of routes; this builds the blueprint for either."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from flask import Response
from flask.views import MethodView

from ..domain import ocl
from ..domain.errors import Invalid
from ..domain.values import INT64_MAX
from ..model import CONCEPT, ItemFilters
from ..timeutil import parse_time
from .common import (
    current_caller,
    domain,
    json_response,
    list_response,
    owner_routes,
    paging_headers,
    render_item,
    resolve_source,
)
from .docs import errors
from .parsing import Blueprint
from .schemas import (
    ConceptArgsSchema,
    DescriptionOut,
    HardDeleteArgsSchema,
    HistoryArgsSchema,
    ItemListArgsSchema,
    NameOut,
)
from .sources import repo_filters


def render_concept_with(args: dict[str, Any], source: dict[str, Any], version: dict[str, Any],
                        item: dict[str, Any]) -> dict[str, Any]:
    """A concept, with `mappings` when includeMappings / includeInverseMappings ask for them."""
    rendered = render_item(item, source)
    if args.get("includeMappings") or args.get("includeInverseMappings"):
        mappings = domain().content.concept_mappings(
            source, version, item, inverse=bool(args.get("includeInverseMappings")),
            include_retired=bool(args.get("includeRetired")))
        rendered["mappings"] = [render_item(mapping, source) for mapping in mappings]
    return rendered


def render_listed(args: dict[str, Any], source: dict[str, Any], version: dict[str, Any],
                  item: dict[str, Any]) -> dict[str, Any]:
    """An item of a list: a concept with its mappings when the list asks for them."""
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
    """OCL's concept and mapping search parameters as the store's filters (400: a bad time)."""
    since = None
    if args.get("updatedSince"):
        try:
            since = parse_time(args["updatedSince"])
        except ValueError:
            raise Invalid(f"updatedSince {args['updatedSince']!r} is not an ISO 8601 time.",
                          errors={"updatedSince": ["Not an ISO 8601 time."]}) from None
    filters = ItemFilters(
        q=args.get("q") or None, concept_class=_values(args.get("conceptClass")),
        datatype=_values(args.get("datatype")), locale=_values(args.get("locale")),
        map_type=_values(args.get("mapType")), from_concept=_concept_end(args.get("fromConcept")),
        from_source=args.get("fromConceptSource") or None,
        from_owner=args.get("fromConceptOwner") or None,
        to_concept=_concept_end(args.get("toConcept")),
        to_source=args.get("toConceptSource") or None,
        to_owner=args.get("toConceptOwner") or None)
    return filters, since


def whole_list(items: list[Any]) -> Response:
    """A list that is never paged (a concept's names or descriptions), with paging headers."""
    return json_response(items, headers=paging_headers(len(items), len(items), None))


def item_blueprint(item_type: str, create_schema: Any, update_schema: Any,
                   out_schema: Any) -> Blueprint:
    """Routes for concepts or mappings: list and create on HEAD, read at any version, write HEAD."""
    path = ocl.ITEM_PATHS[item_type]
    noun = item_type.lower()
    blp = Blueprint(path, __name__, description=f"{item_type}s of a source (writes go to HEAD).")

    def save(source: dict[str, Any], payload: dict[str, Any], expect: str) -> tuple[str, dict[str, Any]]:
        content = domain().content
        save_item = content.save_concept if item_type == CONCEPT else content.save_mapping
        return save_item(current_caller(), source, payload, expect=expect)

    def update(changes: dict[str, Any], source_id: str, item_id: str, owner_kind: str | None,
               owner_id: str | None) -> Response:
        _, source = resolve_source(owner_kind, owner_id, source_id)
        content = domain().content
        update_item = content.update_concept if item_type == CONCEPT else content.update_mapping
        item = update_item(current_caller(), source, item_id, changes)[1]
        return json_response(render_item(item, source))

    def list_items(args: dict[str, Any], source: dict[str, Any], version: dict[str, Any]) -> Response:
        filters, since = item_filters(args)
        return list_response(args, lambda skip, limit: domain().content.list_items(
            source, version, item_type, args["includeRetired"], skip, limit, filters, since),
            lambda item: render_listed(args, source, version, item))

    class Search(MethodView):
        @blp.arguments(ItemListArgsSchema, location="query", error_status_code=400)
        @blp.response(200, out_schema(many=True))
        @errors(blp, 400, 401)
        def get(self, args: dict[str, Any]) -> Response:
            filters, since = item_filters(args)
            content = domain().content
            sources: dict[str, dict[str, Any]] = {}

            def render(item: dict[str, Any]) -> dict[str, Any]:
                if item["source"] not in sources:
                    sources[item["source"]] = content.find_repo(item["source"]) or {}
                source = sources[item["source"]]
                return render_listed(args, source, content.head_version(source), item)

            return list_response(args, lambda skip, limit: content.search_items(
                current_caller(), item_type, args["includeRetired"], filters,
                repo_filters({"owner": args.get("owner"), "ownerType": args.get("ownerType")}),
                skip, limit, since), render)

    Search.get.__doc__ = (f"Search the {noun}s of every source the caller may see (HEAD), by "
                          f"type then id (`q`, `owner`, ... narrow it).")
    blp.route(f"/{path}/", endpoint=f"all_{path}")(Search)

    class Collection(MethodView):
        @blp.arguments(ItemListArgsSchema, location="query", error_status_code=400)
        @blp.response(200, out_schema(many=True))
        @errors(blp, 400, 401, 404)
        def get(self, args: dict[str, Any], source_id: str, owner_kind: str | None = None,
                owner_id: str | None = None) -> Response:
            _, source = resolve_source(owner_kind, owner_id, source_id)
            return list_items(args, source, domain().content.head_version(source))

        @blp.arguments(create_schema)
        @blp.response(201, out_schema)
        @errors(blp, 401, 403, 404, 405, 409, 422)
        def post(self, payload: dict[str, Any], source_id: str, owner_kind: str | None = None,
                 owner_id: str | None = None) -> Response:
            _, source = resolve_source(owner_kind, owner_id, source_id)
            _, item = save(source, payload, "new")
            return json_response(render_item(item, source), 201, {"Location": item["url"]})

    Collection.get.__doc__ = f"List the {noun}s of HEAD, by id."
    Collection.post.__doc__ = f"Create a {noun} in HEAD."
    owner_routes(blp, f"sources/<source_id>/{path}/", f"{path}")(Collection)

    class VersionCollection(MethodView):
        @blp.arguments(ItemListArgsSchema, location="query", error_status_code=400)
        @blp.response(200, out_schema(many=True))
        @errors(blp, 400, 401, 404)
        def get(self, args: dict[str, Any], source_id: str, version_id: str,
                owner_kind: str | None = None, owner_id: str | None = None) -> Response:
            _, source = resolve_source(owner_kind, owner_id, source_id)
            return list_items(args, source, domain().content.get_version(source, version_id))

    VersionCollection.get.__doc__ = f"List the {noun}s of a version, by id."
    owner_routes(blp, f"sources/<source_id>/<version_id>/{path}/", f"version_{path}")(VersionCollection)

    class Item(MethodView):
        @blp.arguments(ConceptArgsSchema, location="query", error_status_code=400)
        @blp.response(200, out_schema)
        @errors(blp, 400, 401, 404, 409)
        def get(self, args: dict[str, Any], source_id: str, item_id: str,
                owner_kind: str | None = None, owner_id: str | None = None) -> Response:
            _, source = resolve_source(owner_kind, owner_id, source_id)
            content = domain().content
            head = content.head_version(source)
            item = content.get_item(source, head, item_type, item_id)
            if item_type == CONCEPT:
                return json_response(render_concept_with(args, source, head, item))
            return json_response(render_item(item, source))

        @blp.arguments(update_schema)
        @blp.response(200, out_schema)
        @errors(blp, 401, 403, 404, 405, 409, 422)
        def put(self, changes: dict[str, Any], source_id: str, item_id: str,
                owner_kind: str | None = None, owner_id: str | None = None) -> Response:
            return update(changes, source_id, item_id, owner_kind, owner_id)

        @blp.arguments(update_schema)
        @blp.response(200, out_schema)
        @errors(blp, 401, 403, 404, 405, 409, 422)
        def patch(self, changes: dict[str, Any], source_id: str, item_id: str,
                  owner_kind: str | None = None, owner_id: str | None = None) -> Response:
            return update(changes, source_id, item_id, owner_kind, owner_id)

        @blp.arguments(HardDeleteArgsSchema, location="query", error_status_code=400)
        @blp.response(204)
        @errors(blp, 400, 401, 403, 404, 405, 409)
        def delete(self, args: dict[str, Any], source_id: str, item_id: str,
                   owner_kind: str | None = None, owner_id: str | None = None) -> Response:
            _, source = resolve_source(owner_kind, owner_id, source_id)
            domain().content.delete_item(current_caller(), source, item_type, item_id, args["hard"])
            return Response(status=204)

    Item.get.__doc__ = f"A {noun} as it is in HEAD."
    Item.put.__doc__ = f"Change a {noun} in HEAD (given fields replace stored ones)."
    Item.patch.__doc__ = f"Change some fields of a {noun} in HEAD."
    Item.delete.__doc__ = f"Retire a {noun}, or delete it with hard=true (leaves a tombstone)."
    owner_routes(blp, f"sources/<source_id>/{path}/<item_id>/", f"{noun}")(Item)

    class VersionItem(MethodView):
        @blp.arguments(ConceptArgsSchema, location="query", error_status_code=400)
        @blp.response(200, out_schema)
        @errors(blp, 400, 401, 404, 409)
        def get(self, args: dict[str, Any], source_id: str, version_id: str, item_id: str,
                owner_kind: str | None = None, owner_id: str | None = None) -> Response:
            _, source = resolve_source(owner_kind, owner_id, source_id)
            content = domain().content
            version = content.get_version(source, version_id)
            item = content.get_item(source, version, item_type, item_id)
            if item_type == CONCEPT:
                return json_response(render_concept_with(args, source, version, item))
            return json_response(render_item(item, source))

    VersionItem.get.__doc__ = f"A {noun} as it is in a version."
    owner_routes(blp, f"sources/<source_id>/<version_id>/{path}/<item_id>/", f"version_{noun}")(VersionItem)

    class ItemVersion(MethodView):
        @blp.response(200, out_schema)
        @errors(blp, 401, 404, 409)
        def get(self, source_id: str, item_id: str, item_version: int,
                owner_kind: str | None = None, owner_id: str | None = None) -> Response:
            _, source = resolve_source(owner_kind, owner_id, source_id)
            item = domain().content.get_item_version(source, item_type, item_id, item_version)
            return json_response(render_item(item, source))

    ItemVersion.get.__doc__ = f"One version of a {noun}: what its `version_url` names."
    # A number past 64 bits names no version (storage holds no larger one): 404, never a 500.
    owner_routes(blp, f"sources/<source_id>/{path}/<item_id>/<int(max={INT64_MAX}):item_version>/",
                 f"{noun}_version")(ItemVersion)

    class History(MethodView):
        @blp.arguments(HistoryArgsSchema, location="query", error_status_code=400)
        @blp.response(200, out_schema(many=True))
        @errors(blp, 400, 401, 404, 409)
        def get(self, args: dict[str, Any], source_id: str, item_id: str,
                owner_kind: str | None = None, owner_id: str | None = None) -> Response:
            _, source = resolve_source(owner_kind, owner_id, source_id)
            return list_response(args, lambda skip, limit: domain().content.item_history(
                source, item_type, item_id, skip, limit), lambda item: render_item(item, source))

    History.get.__doc__ = f"The versions of a {noun}, newest first (its history)."
    owner_routes(blp, f"sources/<source_id>/{path}/<item_id>/versions/", f"{noun}_history")(History)

    class Extras(MethodView):
        @blp.response(200, {"type": "object"})
        @errors(blp, 401, 404, 409)
        def get(self, source_id: str, item_id: str, owner_kind: str | None = None,
                owner_id: str | None = None) -> Response:
            _, source = resolve_source(owner_kind, owner_id, source_id)
            content = domain().content
            item = content.get_item(source, content.head_version(source), item_type, item_id)
            return json_response(item["data"].get("extras") or {})

    Extras.get.__doc__ = f"The extras (custom attributes) of a {noun} in HEAD."
    owner_routes(blp, f"sources/<source_id>/{path}/<item_id>/extras/", f"{noun}_extras")(Extras)

    if item_type == CONCEPT:
        for part, schema, render in (("names", NameOut, ocl.render_names),
                                     ("descriptions", DescriptionOut, ocl.render_descriptions)):
            owner_routes(blp, f"sources/<source_id>/{path}/<item_id>/{part}/",
                         f"{noun}_{part}")(_localized_view(blp, part, schema, render))
    return blp


def _localized_view(blp: Blueprint, part: str, schema: Any, render: Any) -> type[MethodView]:
    """The view of a concept's names or descriptions in HEAD."""

    class Localized(MethodView):
        @blp.response(200, schema(many=True))
        @errors(blp, 401, 404, 409)
        def get(self, source_id: str, item_id: str, owner_kind: str | None = None,
                owner_id: str | None = None) -> Response:
            _, source = resolve_source(owner_kind, owner_id, source_id)
            content = domain().content
            item = content.get_item(source, content.head_version(source), CONCEPT, item_id)
            return whole_list(render(item["url"], item["data"].get(part) or []))

    Localized.get.__doc__ = f"The {part} of a concept in HEAD, each with its uuid."
    Localized.__name__ = f"Concept{part.capitalize()}"
    return Localized
