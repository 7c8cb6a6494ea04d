"""Concepts of a source at HEAD or at a version: a paged list filtered by text, class and datatype,
and a concept's page with its names, descriptions, extras, mappings both ways and history."""

from __future__ import annotations

import logging
from typing import Any

from flask import Blueprint, redirect, request, url_for

from ..domain import ocl
from ..domain.browse import ItemMatch, LinkedMapping
from ..domain.content import is_collection
from ..model import CONCEPT, Source, Version
from .sources import SOURCE, resolve_source
from .web import (
    Answer,
    caller,
    domain,
    owner_kind,
    page_number,
    pager,
    render,
    services,
    source_args,
    text_arg,
)

logger = logging.getLogger(__name__)

bp = Blueprint("concepts", __name__)

VERSION_CHOICES = 20  # versions offered by the version selector (the newest)
TRUE = ("1", "true", "on", "yes")


def selected_version(source: Source) -> Version:
    """The version the page shows: `?version=` (an id, or 'latest'), HEAD by default."""
    return domain().content.get_version(source, text_arg("version") or "HEAD")


def concept_page_url(concept_url: str | None, version: str | None = None) -> str | None:
    """The console page of a concept named by its API url (None if it is not one)."""
    parsed = ocl.parse_concept_url(concept_url) if concept_url else None
    if parsed is None:
        return None
    arguments: dict[str, Any] = {"owner_kind": owner_kind(parsed["owner_type"]),
                                 "owner_id": parsed["owner"], "repo_path": "sources",
                                 "source_id": parsed["source"], "concept_id": parsed["code"]}
    if version:
        arguments["version"] = version
    return url_for("console.concepts.concept", **arguments)


def linked(link: LinkedMapping, direction: str, source: Source,
           version_id: str | None) -> dict[str, Any]:
    """A mapping row of a concept page, with a link to the concept at its other end (at the
    version viewed when that concept is in the same source)."""
    other = link.item["data"].get("to_concept_url" if direction == "outbound"
                                  else "from_concept_url")
    same_source = bool(other) and other.startswith(source.url) and not link.at_head
    return {"mapping": ocl.render_mapping(link.item, link.source), "source": link.source,
            "at_head": link.at_head,
            "other_url": concept_page_url(other, version_id if same_source else None)}


@bp.route(f"{SOURCE}/concepts/")
def concepts(owner_kind: str, owner_id: str, repo_path: str, source_id: str) -> Answer:
    """A page of concepts by id (a collection's: by url), narrowed by `q` (id or name), class
    and datatype. A collection's concepts link to their pages in their own sources."""
    _, found = resolve_source(owner_kind, owner_id, repo_path, source_id)
    version = selected_version(found)
    match = ItemMatch(text=text_arg("q"), concept_class=text_arg("concept_class"),
                      datatype=text_arg("datatype"))
    include_retired = (request.args.get("retired") or "").lower() in TRUE
    settings = services().settings
    page, limit = page_number(), settings.page_size
    result = domain().browse.find_concepts(found, version, match, include_retired,
                                           (page - 1) * limit, limit, settings.search_count_limit)
    versions, _ = domain().content.list_versions(found, None, 0, VERSION_CHOICES)
    render_item = domain().content.renderer(found)  # a collection's items keep their sources
    version_id = None if version.is_head else version.id
    rows = []
    for item in result.items:
        rendered = render_item(item)
        arguments: dict[str, Any] = dict(source_args(found), concept_id=rendered["id"],
                                         version=version_id)
        link = concept_page_url(rendered["url"]) if is_collection(found) else url_for(
            "console.concepts.concept", **arguments)
        rows.append((rendered, link))
    return render("console/concepts.html", source=found, version=version, versions=versions,
                  match=match, include_retired=include_retired, concepts=rows,
                  found=result, pager=pager(page, limit, result.num_found, result.more))


@bp.route(f"{SOURCE}/concepts/<concept_id>/")
def concept(owner_kind: str, owner_id: str, repo_path: str, source_id: str,
            concept_id: str) -> Answer:
    """A concept as it is in a version (HEAD by default), with its mappings and history; a
    collection's concept is shown on its own source's page."""
    _, found = resolve_source(owner_kind, owner_id, repo_path, source_id)
    version = selected_version(found)
    item = domain().content.get_item(found, version, CONCEPT, concept_id)
    if is_collection(found):
        return redirect(concept_page_url(item["url"]) or url_for("console.home"), 303)
    browse = domain().browse
    links = browse.concept_links(caller(), found, version, item["url"])
    version_id = None if version.is_head else version.id
    mappings = {direction: [linked(link, direction, found, version_id)
                            for link in getattr(links, direction)]
                for direction in ("outbound", "inbound")}
    return render("console/concept.html", source=found, version=version,
                  concept=ocl.render_concept(item, found), mappings=mappings,
                  history=browse.item_history(found, item["url"]))
