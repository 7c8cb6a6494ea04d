"""OCL CSV (as in OCL's bulk-import templates) to OCL JSON-line records, one or more per row.

Columns follow ocldev's CSV conventions: `resource_type`, `owner_id`, `owner_type`, `source`, `id`,
`name`/`name_type`/`name_locale` (more names as `name[x]`, `name_type[x]`, `name_locale[x]`), the
same for `description`, `attr:KEY` into extras, and for a concept row inline mappings as
`map_type[x]` with `map_to_concept_url[x]` or `map_to_concept_owner_id[x]` /
`map_to_concept_source[x]` / `map_to_concept_id[x]` (`extmap_*[x]` the same, to an external code).
A row that cannot become a record still becomes one, so the loader reports it with its line.
"""

from __future__ import annotations

import re
from typing import Any

_SUFFIX = re.compile(r"^(?P<base>[^\[]+)(\[(?P<key>[^\]]*)\])?$")
TRUE = ("true", "1", "yes", "y", "t")

TEMPLATES = {
    "concept": (
        ["resource_type", "owner_id", "owner_type", "source", "id", "external_id", "concept_class",
         "datatype", "retired", "name", "name_locale", "name_type", "name[2]", "name_locale[2]",
         "name_type[2]", "description", "description_locale", "attr:units", "map_type[1]",
         "map_to_concept_owner_id[1]", "map_to_concept_source[1]", "map_to_concept_id[1]"],
        ["Concept", "MyOrg", "Organization", "MySource", "1234", "", "Diagnosis", "N/A", "false",
         "Malaria", "en", "FULLY_SPECIFIED", "Paludisme", "fr", "FULLY_SPECIFIED",
         "A mosquito-borne infectious disease", "en", "", "SAME-AS", "MyOrg", "MySource", "5678"],
    ),
    "mapping": (
        ["resource_type", "owner_id", "owner_type", "source", "id", "external_id", "map_type",
         "from_concept_url", "to_concept_url", "to_source_url", "to_concept_code",
         "to_concept_name", "retired"],
        ["Mapping", "MyOrg", "Organization", "MySource", "", "", "SAME-AS",
         "/orgs/MyOrg/sources/MySource/concepts/1234/", "", "/orgs/WHO/sources/ICD-10-WHO/",
         "B54", "Unspecified malaria", "false"],
    ),
}

_OWNER_TYPES = {"organization": "Organization", "org": "Organization", "orgs": "Organization",
                "user": "User", "users": "User"}
_RESOURCE_TYPES = {"concept": "Concept", "mapping": "Mapping", "source": "Source",
                   "organization": "Organization", "org": "Organization",
                   "source version": "Source Version", "version": "Source Version"}


def _split(row: dict[str, str]) -> tuple[dict[str, str], dict[str, dict[str, str]]]:
    """Plain columns, and suffixed ones grouped by suffix: {"x": {"name": ..., "name_type": ...}}."""
    plain: dict[str, str] = {}
    grouped: dict[str, dict[str, str]] = {}
    for column, value in row.items():
        if column is None or value is None:
            continue
        value = value.strip()
        if not value:
            continue
        match = _SUFFIX.match(column.strip())
        if match is None:
            continue
        if match.group("key") is None:
            plain[match.group("base")] = value
        else:
            grouped.setdefault(match.group("key"), {})[match.group("base")] = value
    return plain, grouped


def _owner(plain: dict[str, str]) -> dict[str, Any]:
    record: dict[str, Any] = {}
    if plain.get("owner_id") or plain.get("owner"):
        record["owner"] = plain.get("owner_id") or plain.get("owner")
        record["owner_type"] = _OWNER_TYPES.get(plain.get("owner_type", "").lower(), "Organization")
    if plain.get("source"):
        record["source"] = plain["source"]
    return record


def _names(groups: list[dict[str, str]], kind: str) -> list[dict[str, Any]]:
    names = []
    for group in groups:
        if not group.get(kind):
            continue
        entry: dict[str, Any] = {kind: group[kind], "locale": group.get(f"{kind}_locale", "en")}
        if group.get(f"{kind}_type"):
            entry[f"{kind}_type"] = group[f"{kind}_type"]
        if group.get(f"{kind}_external_id"):
            entry["external_id"] = group[f"{kind}_external_id"]
        if group.get(f"{kind}_locale_preferred"):
            entry["locale_preferred"] = group[f"{kind}_locale_preferred"].lower() in TRUE
        names.append(entry)
    return names


def _concept_url(prefix: str, group: dict[str, str], owner: dict[str, Any]) -> str | None:
    if group.get(f"{prefix}_concept_url"):
        return group[f"{prefix}_concept_url"]
    concept_id = group.get(f"{prefix}_concept_id")
    if not concept_id:
        return None
    owner_id = group.get(f"{prefix}_concept_owner_id") or owner.get("owner")
    owner_type = _OWNER_TYPES.get(group.get(f"{prefix}_concept_owner_type", "").lower(),
                                  owner.get("owner_type", "Organization"))
    source = group.get(f"{prefix}_concept_source") or owner.get("source")
    kind = "users" if owner_type == "User" else "orgs"
    return f"/{kind}/{owner_id}/sources/{source}/concepts/{concept_id}/"


def _mapping(fields: dict[str, str], owner: dict[str, Any], from_url: str | None,
             external: bool) -> dict[str, Any]:
    record: dict[str, Any] = dict(owner, type="Mapping")
    if fields.get("map_type"):
        record["map_type"] = fields["map_type"]
    if fields.get("id") or fields.get("map_id"):
        record["id"] = fields.get("id") or fields.get("map_id")
    if fields.get("external_id") or fields.get("map_external_id"):
        record["external_id"] = fields.get("map_external_id") or fields.get("external_id")
    record["from_concept_url"] = from_url or _concept_url("from", fields, owner)
    if external:
        owner_id = fields.get("to_concept_owner_id")
        source = fields.get("to_concept_source")
        kind = "users" if fields.get("to_concept_owner_type", "").lower() == "user" else "orgs"
        if owner_id and source:
            record["to_source_url"] = f"/{kind}/{owner_id}/sources/{source}/"
        record["to_concept_code"] = fields.get("to_concept_id") or fields.get("to_concept_code")
    else:
        to_url = _concept_url("to", fields, owner)
        if to_url:
            record["to_concept_url"] = to_url
        else:
            if fields.get("to_source_url"):
                record["to_source_url"] = fields["to_source_url"]
            if fields.get("to_concept_code"):
                record["to_concept_code"] = fields["to_concept_code"]
    if fields.get("to_concept_name"):
        record["to_concept_name"] = fields["to_concept_name"]
    if fields.get("retired"):
        record["retired"] = fields["retired"].lower() in TRUE
    return {key: value for key, value in record.items() if value is not None}


def _unprefixed(fields: dict[str, str], prefix: str) -> dict[str, str]:
    """map_type -> map_type, map_to_concept_id -> to_concept_id (inline mapping columns)."""
    out = {}
    for key, value in fields.items():
        if key.startswith(prefix):
            rest = key[len(prefix):]
            out["map_type" if rest == "type" else rest] = value
    return out


def row_records(row: dict[str, str]) -> list[dict[str, Any]]:
    """The OCL records one CSV row stands for: the resource, then its inline mappings."""
    plain, grouped = _split(row)
    resource_type = _RESOURCE_TYPES.get(plain.get("resource_type", "").lower())
    if resource_type is None:
        given = plain.get("resource_type")
        return [{"type": given or "", "_csv_error": "resource_type"}]
    owner = _owner(plain)
    extras = {key[len("attr:"):]: value for key, value in plain.items() if key.startswith("attr:")}
    if resource_type == "Concept":
        record: dict[str, Any] = dict(owner, type="Concept")
        for key in ("id", "external_id", "concept_class", "datatype"):
            if plain.get(key):
                record[key] = plain[key]
        if plain.get("retired"):
            record["retired"] = plain["retired"].lower() in TRUE
        groups = [plain] + [grouped[key] for key in grouped]
        record["names"] = _names(groups, "name")
        descriptions = _names(groups, "description")
        if descriptions:
            record["descriptions"] = descriptions
        if extras:
            record["extras"] = extras
        records = [record]
        if owner.get("owner") and owner.get("source") and plain.get("id"):
            kind = "users" if owner.get("owner_type") == "User" else "orgs"
            self_url = f"/{kind}/{owner['owner']}/sources/{owner['source']}/concepts/{plain['id']}/"
        else:
            self_url = None
        for key in sorted(grouped):
            group = grouped[key]
            inline = _unprefixed(group, "map_")
            if inline.get("map_type"):
                records.append(_mapping(inline, owner, inline.get("from_concept_url") or self_url,
                                        external=False))
            external = _unprefixed(group, "extmap_")
            if external.get("to_concept_id") or external.get("to_concept_code"):
                external.setdefault("map_type", inline.get("map_type") or "SAME-AS")
                records.append(_mapping(external, owner, self_url, external=True))
        return records
    if resource_type == "Mapping":
        fields = dict(plain)
        fields.update(_unprefixed(plain, "map_"))
        return [_mapping(fields, owner, None, external=False)]
    record = dict(owner, type=resource_type)
    for key, value in plain.items():
        if key not in ("resource_type", "owner_id", "owner_type", "owner", "source") \
                and not key.startswith("attr:"):
            record[key] = value
    if resource_type == "Organization" and "id" not in record and plain.get("owner_id"):
        record["id"] = plain["owner_id"]
    if resource_type == "Source" and plain.get("source") and "id" not in record:
        record["id"] = plain["source"]
    if extras:
        record["extras"] = extras
    return [record]


def template(kind: str) -> str:
    """The CSV template of a resource type: a header row and one example row."""
    import csv
    import io

    header, example = TEMPLATES[kind]
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(header)
    writer.writerow(example)
    return buffer.getvalue()
