"""Item normalisation: OCL field variations, timestamps, checksums.content."""

from __future__ import annotations

import hashlib

import pytest

from sync.items import InvalidItem, content_checksum, item_record, normalize_timestamp, shift_timestamp


@pytest.mark.parametrize("raw, canonical", [
    ("2023-05-26T12:00:28.881305Z", "2023-05-26T12:00:28.881305Z"),
    ("2023-05-26T12:00:28.881305", "2023-05-26T12:00:28.881305Z"),  # zone-less = UTC
    ("2023-05-26 12:00:28", "2023-05-26T12:00:28.000000Z"),
    ("2023-05-26T14:00:28.5+02:00", "2023-05-26T12:00:28.500000Z"),
    ("2023-05-26", "2023-05-26T00:00:00.000000Z"),
])
def test_timestamps_normalise_to_the_fixed_form(raw, canonical):
    assert normalize_timestamp(raw) == canonical


def test_unreadable_timestamp_and_shift():
    with pytest.raises(InvalidItem, match="not ISO 8601"):
        normalize_timestamp("yesterday")
    assert shift_timestamp("2026-01-01T00:00:30.000000Z", -60) == "2025-12-31T23:59:30.000000Z"


def test_ocl_variations():
    legacy = item_record({"id": "1", "updated_at": "2019-05-01T10:00:00", "version": 7,
                          "retired": "True"}, "mappings", "/orgs/CIEL/sources/CIEL/")
    assert (legacy.type, legacy.url, legacy.version, legacy.updated_on) == (
        "Mapping", "/orgs/CIEL/sources/CIEL/mappings/1/", "7", "2019-05-01T10:00:00.000000Z")
    tombstone = item_record({"type": "Concept", "id": "A", "url": "/x/concepts/A/",
                             "deleted": True, "updated_on": "2026-01-01T00:00:00Z"})
    assert tombstone.deleted and tombstone.version == ""
    with pytest.raises(InvalidItem, match="no usable type"):
        item_record({"id": "A", "url": "/x/"})
    with pytest.raises(InvalidItem, match="without url"):
        item_record({"type": "Concept"})


def test_checksum_matches_the_contract():
    assert content_checksum([]) == "0" * 64
    terms = [int.from_bytes(hashlib.sha256(line).digest(), "big")
             for line in (b"/a/\t1\n", b"/b/\t2\n")]
    assert content_checksum([("/a/", "1"), ("/b/", "2")]) == format(sum(terms) % 2**256, "064x")
    assert content_checksum([("/b/", "2"), ("/a/", "1")]) == content_checksum([("/a/", "1"),
                                                                              ("/b/", "2")])
