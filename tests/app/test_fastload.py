"""The compiled fast path of the payload schemas answers exactly as marshmallow does.

Every schema of `payloads` loads the real OCL lines of the fixtures, and those lines with each
field in turn replaced by odd values or removed, once through `OclSchema.load` (fast path, then
marshmallow when unsure) and once through marshmallow's own `Schema.load`: the results, or the
error messages, are the same.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
from marshmallow import Schema, ValidationError

from app.domain import payloads
from app.domain.fastload import Unsure, compile_schema

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
SCHEMAS = [cls for cls in vars(payloads).values() if isinstance(cls, type)
           and issubclass(cls, payloads.OclSchema) and cls is not payloads.OclSchema]
DEEP: Any = 1
for _ in range(40):
    DEEP = [DEEP]
DEEP = {"deep": DEEP}  # nested deeper than extras may be
ODD_VALUES: list[Any] = [None, "", "x", "True", "false", "yes", 1, 0, -1, 2**70, 1.5, True,
                         False, [], ["a"], [None], [1], {}, {"a": 1}, {"$bad": 1}, {"a\x00": 1},
                         [{"name": "n", "locale": "en"}], [{"name": 1, "locale": "en"}],
                         [{"name": "n"}], [{"description": "d", "locale": "en",
                                            "locale_preferred": "True"}],
                         DEEP]


def fixture_records() -> list[dict[str, Any]]:
    records = []
    for name in ("sample_ocldev.jsonl", "ciel_2019_c2k.jsonl", "ciel_2019_m2k.jsonl",
                 "invalid_import_json.jsonl", "invalid_import_without_type.jsonl"):
        for line in (FIXTURES / name).read_text(encoding="utf-8").splitlines()[:8]:
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if isinstance(record, dict):
                records.append(record)
    return records


RECORDS = fixture_records()


def outcome(load: Any, record: Any) -> tuple[str, Any]:
    try:
        return "loaded", load(copy.deepcopy(record))
    except ValidationError as error:
        return "refused", error.messages


def variants(record: dict[str, Any]) -> list[Any]:
    found: list[Any] = [record, [record], "not an object"]
    for key in record:
        found.append({k: v for k, v in record.items() if k != key})
        found.extend(dict(record, **{key: value}) for value in ODD_VALUES)
    for key in ("names", "descriptions"):
        for index, entry in enumerate(record.get(key) or []):
            if isinstance(entry, dict):
                for field in entry:
                    for value in (None, "", 1, "True", True, {}):
                        changed = copy.deepcopy(record)
                        changed[key][index][field] = value
                        found.append(changed)
    return found


@pytest.mark.parametrize("schema_class", SCHEMAS, ids=lambda cls: cls.__name__)
def test_every_schema_answers_as_marshmallow_does(schema_class: type[Schema]) -> None:
    schema = schema_class()
    assert compile_schema(schema) is not None, "the payload schemas all compile"
    compared = 0
    for record in RECORDS:
        for variant in variants(record):
            assert outcome(schema.load, variant) == outcome(
                lambda data: Schema.load(schema, data), variant), variant
            compared += 1
    assert compared > 1000


def test_real_lines_take_the_fast_path() -> None:
    """Concept and mapping lines of real files are loaded without marshmallow at all."""
    loaders = {"Concept": compile_schema(payloads.ConceptSchema()),
               "Mapping": compile_schema(payloads.MappingSchema())}
    taken = 0
    for name in ("sample_ocldev.jsonl", "ciel_2019_c2k.jsonl", "ciel_2019_m2k.jsonl"):
        for line in (FIXTURES / name).read_text(encoding="utf-8").splitlines():
            record = json.loads(line)
            kind = record.get("type") or ("Mapping" if "map_type" in record else "Concept")
            if kind in loaders:
                loader = loaders[kind]
                assert loader is not None
                try:
                    loader(record)
                except Unsure:
                    pytest.fail(f"a valid {kind} line fell back to marshmallow: {line[:200]}")
                taken += 1
    assert taken > 3000
