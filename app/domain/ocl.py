"""Rendering stored documents in OCL's JSON shapes (as in OCL's own export files)."""

from __future__ import annotations

import hashlib
import uuid
from collections import Counter
from typing import Any
from urllib.parse import quote, unquote

from ..model import Source, Version, version_url

KIND_PATHS = {"Organization": "orgs", "User": "users"}
ITEM_PATHS = {"Concept": "concepts", "Mapping": "mappings"}
# uuids are derived from urls (unique on this server), so no backend has to store them.
UUID_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "https://termsync.invalid/uuid/")


_NAMESPACE_BYTES = UUID_NAMESPACE.bytes


def uuid_for(key: str) -> str:
    """The uuid a server-wide unique key names (the same key, the same uuid): uuid5, computed
    without building UUID objects (rendering a page of concepts asks for thousands)."""
    digest = bytearray(hashlib.sha1(_NAMESPACE_BYTES + key.encode()).digest()[:16])
    digest[6] = (digest[6] & 0x0F) | 0x50  # version 5
    digest[8] = (digest[8] & 0x3F) | 0x80  # RFC 4122 variant
    text = digest.hex()
    return f"{text[:8]}-{text[8:12]}-{text[12:16]}-{text[16:20]}-{text[20:]}"


def _text_uuids(item_url: str, kind: str, entries: list[dict[str, Any]], text: str,
                text_type: str) -> list[str]:
    """uuids of a concept's names or descriptions: one keeps its uuid from version to version while
    it is the same (locale, type, text); identical entries are told apart by their rank."""
    seen: Counter[tuple[Any, ...]] = Counter()
    uuids = []
    for entry in entries:
        key = (entry.get("locale"), entry.get(text_type), entry.get(text))
        rank = seen[key]
        seen[key] += 1
        uuids.append(uuid_for(f"{item_url}{kind}/{key[0]}\t{key[1]}\t{key[2]}\t{rank}"))
    return uuids


def source_url(owner_url: str, source_id: str) -> str:
    """The url of a source under its owner's url."""
    return f"{owner_url}sources/{source_id}/"


def item_url(source_url_: str, item_type: str, item_id: str) -> str:
    """The url of a concept or mapping in a source."""
    return f"{source_url_}{ITEM_PATHS[item_type]}/{quote(item_id, safe='')}/"


def parse_concept_url(url: str) -> dict[str, str] | None:
    """Split '/orgs/O/sources/S/concepts/C/' into its parts; None if it is not one."""
    parts = url.strip("/").split("/")
    if len(parts) != 6 or parts[0] not in ("orgs", "users") or parts[2] != "sources" \
            or parts[4] != "concepts" or not all(parts):
        return None
    return {"owner_type": "Organization" if parts[0] == "orgs" else "User", "owner": parts[1],
            "owner_url": f"/{parts[0]}/{parts[1]}/", "source": parts[3],
            "source_url": f"/{parts[0]}/{parts[1]}/sources/{parts[3]}/",
            "code": unquote(parts[5])}


def parse_source_url(url: str) -> dict[str, str] | None:
    """Split '/orgs/O/sources/S/' into its parts; None if it is not one."""
    parts = url.strip("/").split("/")
    if len(parts) != 4 or parts[0] not in ("orgs", "users") or parts[2] != "sources" \
            or not all(parts):
        return None
    return {"owner_type": "Organization" if parts[0] == "orgs" else "User", "owner": parts[1],
            "source": parts[3]}


def render_names(item_url: str, names: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A concept's names in OCL's shape, each with its uuid."""
    uuids = _text_uuids(item_url, "names", names, "name", "name_type")
    return [{"uuid": name_uuid, "external_id": name.get("external_id"), "type": "ConceptName",
             "locale": name.get("locale"), "locale_preferred": bool(name.get("locale_preferred")),
             "name": name.get("name"), "name_type": name.get("name_type")}
            for name_uuid, name in zip(uuids, names, strict=True)]


def render_descriptions(item_url: str, descriptions: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A concept's descriptions in OCL's shape, each with its uuid."""
    uuids = _text_uuids(item_url, "descriptions", descriptions, "description", "description_type")
    return [{"uuid": entry_uuid, "external_id": entry.get("external_id"),
             "type": "ConceptDescription", "locale": entry.get("locale"),
             "locale_preferred": bool(entry.get("locale_preferred")),
             "description": entry.get("description"),
             "description_type": entry.get("description_type")}
            for entry_uuid, entry in zip(uuids, descriptions, strict=True)]


def _display(names: list[dict[str, Any]], default_locale: str | None) -> tuple[str | None, str | None]:
    """The name OCL shows: preferred in the source's locale, else preferred, else the first."""
    if not names:
        return None, None
    ranked = sorted(names, key=lambda name: (name.get("locale") != default_locale,
                                             not name.get("locale_preferred")))
    return ranked[0].get("name"), ranked[0].get("locale")


def tombstone(item: dict[str, Any]) -> dict[str, Any]:
    """What a diff says of a hard-deleted item."""
    return {"type": item["type"], "id": item["id"], "url": item["url"], "deleted": True,
            "version": str(item["seq"]), "updated_on": item["updated_on"]}


def render_item(item: dict[str, Any], source: Source) -> dict[str, Any]:
    """A concept, a mapping, or a tombstone, in OCL's shape."""
    if item.get("deleted"):
        return tombstone(item)
    if item["type"] == "Concept":
        return render_concept(item, source)
    return render_mapping(item, source)


def _common(item: dict[str, Any], source: Source) -> dict[str, Any]:
    data = item["data"]
    version = str(item["seq"])
    return {
        "external_id": data.get("external_id"), "extras": data.get("extras") or {},
        "retired": bool(item.get("retired")), "source": source.id,
        "owner": source.owner, "owner_type": source.owner_type,
        "url": item["url"], "version": version,
        "uuid": uuid_for(version_url(item["url"], item["seq"])),
        "version_url": version_url(item["url"], item["seq"]),
        "update_comment": data.get("update_comment"),
        "created_on": item["created_on"], "updated_on": item["updated_on"],
        "version_created_on": item["updated_on"], "version_created_by": item.get("updated_by"),
        "created_by": item.get("created_by"), "updated_by": item.get("updated_by"),
    }


def render_concept(item: dict[str, Any], source: Source) -> dict[str, Any]:
    """A concept in OCL's shape."""
    data = item["data"]
    names = render_names(item["url"], data.get("names") or [])
    display_name, display_locale = _display(names, source.default_locale)
    rendered = {"type": "Concept", "id": item["id"], "concept_class": data.get("concept_class"),
                "datatype": data.get("datatype"), "names": names,
                "descriptions": render_descriptions(item["url"], data.get("descriptions") or []),
                "display_name": display_name, "display_locale": display_locale,
                "source_url": source.url, "owner_name": source.owner,
                "owner_url": source.owner_url, "locale": None,
                "parent_concept_urls": data.get("parent_concept_urls") or [],
                "child_concept_urls": [], "previous_version_url": None}
    rendered.update(_common(item, source))
    return rendered


def _endpoint(prefix: str, concept_url: str | None, source_url_: str | None,
              code: str | None) -> dict[str, Any]:
    parsed: dict[str, Any] | None = parse_concept_url(concept_url) if concept_url else None
    if parsed is None and source_url_:
        parsed_source = parse_source_url(source_url_)
        parsed = {"source_url": source_url_, "code": code or "",
                  "owner": parsed_source["owner"] if parsed_source else None,
                  "owner_type": parsed_source["owner_type"] if parsed_source else None,
                  "source": parsed_source["source"] if parsed_source else None}
    parsed = parsed or {}
    return {f"{prefix}_concept_url": concept_url, f"{prefix}_concept_code": parsed.get("code", code),
            f"{prefix}_source_url": parsed.get("source_url", source_url_),
            f"{prefix}_source_owner": parsed.get("owner"),
            f"{prefix}_source_owner_type": parsed.get("owner_type"),
            f"{prefix}_source_name": parsed.get("source"), f"{prefix}_source_version": None}


def render_mapping(item: dict[str, Any], source: Source) -> dict[str, Any]:
    """A mapping in OCL's shape."""
    data = item["data"]
    rendered: dict[str, Any] = {"type": "Mapping", "id": item["id"], "map_type": data.get("map_type"),
                                "from_concept_name": None, "to_concept_name": data.get("to_concept_name"),
                                "sort_weight": data.get("sort_weight"),
                                "versioned_object_url": item["url"]}
    rendered.update(_endpoint("from", data.get("from_concept_url"), None, None))
    rendered.update(_endpoint("to", data.get("to_concept_url"), data.get("to_source_url"),
                              data.get("to_concept_code")))
    rendered.update(_common(item, source))
    return rendered


SOURCE_FIELDS = ("short_code", "name", "full_name", "description", "source_type",
                 "custom_validation_schema", "public_access", "default_locale", "supported_locales",
                 "website", "external_id", "extras", "owner", "owner_type", "owner_url",
                 "created_on", "updated_on", "created_by", "updated_by")


COLLECTION_FIELDS = (*(key for key in SOURCE_FIELDS if key != "source_type"), "collection_type",
                     "canonical_url", "preferred_source", "custom_resources_linked_source",
                     "immutable", "locked_date")


def repo_field(repo: Source, name: str) -> Any:
    """One of OCL's fields of a repository, by name, as JSON (its locales a list)."""
    value = getattr(repo, name)
    return list(value) if isinstance(value, tuple) else value


_field = repo_field


def _is_collection(repo: Source) -> bool:
    return repo.repo_type == "Collection"


def render_source(source: Source, checksum: str | None = None) -> dict[str, Any]:
    """A source or a collection (its HEAD) in OCL's shape."""
    if _is_collection(source):
        return render_collection(source, checksum)
    rendered: dict[str, Any] = {"type": "Source", "id": source.id, "uuid": source.id}
    rendered.update({key: _field(source, key) for key in SOURCE_FIELDS})
    rendered.update({
        "url": source.url, "version": "HEAD", "retired": False,
        "concepts_url": f"{source.url}concepts/", "mappings_url": f"{source.url}mappings/",
        "versions_url": f"{source.url}versions/", "lastUpdated": source.last_updated or None,
    })
    if checksum is not None:
        rendered["checksums"] = {"content": checksum}
    return rendered


def render_collection(collection: Source, checksum: str | None = None) -> dict[str, Any]:
    """A collection (its HEAD) in OCL's shape."""
    rendered: dict[str, Any] = {"type": "Collection", "id": collection.id, "uuid": collection.id}
    rendered.update({key: _field(collection, key) for key in COLLECTION_FIELDS})
    url = collection.url
    rendered.update({
        "url": url, "version": "HEAD", "retired": False, "autoexpand_head": True,
        "concepts_url": f"{url}concepts/", "mappings_url": f"{url}mappings/",
        "versions_url": f"{url}versions/", "references_url": f"{url}references/",
        "lastUpdated": collection.last_updated or None,
    })
    if checksum is not None:
        rendered["checksums"] = {"content": checksum}
    return rendered


def render_version(version: Version, source: Source,
                   checksum: str | None = None) -> dict[str, Any]:
    """A source or collection version in OCL's shape (the repository's fields, then the
    version's own, then the repository as `source` or `collection`)."""
    collection = _is_collection(source)
    rendered: dict[str, Any] = {"type": "Collection Version" if collection else "Source Version",
                                "id": version.id, "uuid": version.url}
    rendered.update({key: _field(source, key)
                     for key in (COLLECTION_FIELDS if collection else SOURCE_FIELDS)})
    rendered.update({
        "url": version.url, "version_url": version.url, "version": version.id,
        "description": version.description, "released": version.released,
        "retired": version.retired, "external_id": version.external_id,
        "extras": version.extras,
        "previous_version_url": version.previous_version_url,
        "created_on": version.created_on, "updated_on": version.updated_on,
        "created_by": version.created_by, "updated_by": version.updated_by,
        "concepts_url": f"{version.url}concepts/", "mappings_url": f"{version.url}mappings/",
        "lastUpdated": version.last_updated,
    })
    if collection:
        rendered.update({"references_url": f"{version.url}references/", "autoexpand": True,
                         "collection": render_collection(source)})
    else:
        rendered["source"] = render_source(source)
    if checksum is not None:
        rendered["checksums"] = {"content": checksum}
    return rendered


def render_org(org: dict[str, Any], counts: dict[str, int] | None = None) -> dict[str, Any]:
    """An organization in OCL's shape (with `counts`: members, public_sources, ...)."""
    return {**(counts or {}), "type": "Organization", "id": org["_id"], "uuid": org["_id"],
            "name": org.get("name"),
            "company": org.get("company"), "website": org.get("website"),
            "location": org.get("location"), "public_access": org.get("public_access", "View"),
            "extras": org.get("extras") or {}, "url": f"/orgs/{org['_id']}/",
            "members_url": f"/orgs/{org['_id']}/members/",
            "sources_url": f"/orgs/{org['_id']}/sources/",
            "collections_url": f"/orgs/{org['_id']}/collections/",
            "created_on": org.get("created_on"), "updated_on": org.get("updated_on"),
            "created_by": org.get("created_by"), "updated_by": org.get("updated_by")}


def render_user(user: dict[str, Any], counts: dict[str, int] | None = None, *,
                personal: bool) -> dict[str, Any]:
    """A user in OCL's shape (never with token material; with `counts`: orgs, public_sources).

    `personal`: with what only the user and admins may read (`Accounts.sees_personal_data`): the
    email address and whether the account is active; others get `email` null, as for a user
    who gave none.
    """
    rendered = {**(counts or {}), "type": "User", "id": user["_id"], "username": user["_id"],
                "name": user.get("name"), "email": None, "company": user.get("company"),
                "is_admin": bool(user.get("is_admin")), "url": f"/users/{user['_id']}/",
                "sources_url": f"/users/{user['_id']}/sources/",
                "collections_url": f"/users/{user['_id']}/collections/",
                "orgs_url": f"/users/{user['_id']}/orgs/",
                "created_on": user.get("created_on"), "updated_on": user.get("updated_on")}
    if personal:
        rendered.update(email=user.get("email"), is_active=bool(user.get("is_active", True)))
    return rendered


def render_reference(reference: dict[str, Any]) -> dict[str, Any]:
    """A collection's reference in OCL's shape (its detailed one, as exports carry it)."""
    collection_url = reference["collection"]
    kind = "concepts" if reference["type"] == "Concept" else "mappings"
    return {
        "type": "CollectionReference", "id": reference["seq"],
        "uuid": uuid_for(f"{collection_url}references/{reference['seq']}/"),
        "expression": reference["expression"], "reference_type": kind,
        "uri": f"{collection_url}references/{reference['seq']}/", "include": True,
        "code": reference.get("id"), "system": reference.get("source"),
        "version": reference.get("source_version"),
        "resource_version": str(reference["item_version"]) if reference.get("item_version")
        else None,
        "namespace": None, "valueset": None, "filter": None, "display": None,
        "cascade": reference.get("cascade"), "cascaded_from": reference.get("cascaded_from"),
        "transform": None, "translation": None,
        "concepts": 1 if kind == "concepts" else 0, "mappings": 1 if kind == "mappings" else 0,
        "created_at": reference.get("created_on"), "updated_at": reference.get("created_on"),
        "last_resolved_at": reference.get("created_on"), "created_by": reference.get("created_by"),
    }
