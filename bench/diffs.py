"""Benchmark: load a synthetic source, page its diff (first vs last page), cut versions.

    .venv/bin/python bench/diffs.py                # 100k concepts + 100k mappings
    .venv/bin/python bench/diffs.py --concepts 20000

Prints items/s loading through the domain (every write is a real item version), the time of the
first and of the last diff page of 500 through HTTP (keyset paging keeps last/first near 1), and
the time to cut a version at 1k items and at the full size (constant: nothing is copied).
All ratios compare figures measured in the same run.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from typing import Any

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from app import create_app
from app.domain.accounts import Caller
from app.domain.content import DIFF_SORT, DiffCursor

ADMIN = {"Authorization": "Token bench-admin-token"}
CALLER = Caller(username="admin", is_admin=True)


def concept(number: int) -> dict[str, Any]:
    return {"id": str(number), "concept_class": "Diagnosis", "datatype": "N/A", "retired": False,
            "names": [{"name": f"Concept {number}", "locale": "en", "locale_preferred": True,
                       "name_type": "FULLY_SPECIFIED", "external_id": None}],
            "descriptions": [], "external_id": None, "extras": {}, "parent_concept_urls": [],
            "update_comment": None}


def mapping(source_url: str, number: int, concepts: int) -> dict[str, Any]:
    return {"id": str(number), "map_type": "SAME-AS", "retired": False,
            "from_concept_url": f"{source_url}concepts/{number % concepts}/",
            "to_concept_url": None, "to_source_url": "/orgs/WHO/sources/ICD-10/",
            "to_concept_code": f"X{number}", "to_concept_name": None, "external_id": None,
            "extras": {}, "sort_weight": None, "update_comment": None}


def timed(function: Any, repeat: int = 3) -> float:
    """Median wall time of `repeat` calls, in seconds."""
    samples = []
    for _ in range(repeat):
        start = time.perf_counter()
        function()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def cut_median(content: Any, source: dict[str, Any], prefix: str, repeat: int = 5) -> float:
    """Median time to cut a version now (each cut is a new version)."""
    samples = []
    for number in range(repeat):
        begin = time.perf_counter()
        content.create_version(CALLER, source, {"id": f"{prefix}-{number}"})
        samples.append(time.perf_counter() - begin)
    return statistics.median(samples)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--concepts", type=int, default=100_000)
    parser.add_argument("--mappings", type=int, default=None, help="default: as many as concepts")
    args = parser.parse_args()
    mappings = args.mappings if args.mappings is not None else args.concepts

    app = create_app({"ADMIN_TOKEN": ADMIN["Authorization"].split()[1], "TESTING": True,
                      "LOG_LEVEL": "WARNING"})
    domain = app.extensions["termsync"]
    client = app.test_client()
    client.post("/orgs/", json={"id": "Bench"}, headers=ADMIN)
    client.post("/orgs/Bench/sources/", json={"id": "Big"}, headers=ADMIN)
    source = domain.repos.sources.get("/orgs/Bench/sources/Big/")
    content = domain.content

    cut_times: dict[str, float] = {}
    start = time.perf_counter()
    for number in range(args.concepts):
        content.save_concept(CALLER, source, concept(number), expect="new")
        if number == 999:
            cut_times["1k"] = cut_median(content, source, "at-1k")
    for number in range(mappings):
        content.save_mapping(CALLER, source, mapping(source["url"], number, args.concepts),
                             expect="new")
    load_seconds = time.perf_counter() - start
    total = args.concepts + mappings
    cut_times["full"] = cut_median(content, source, "at-full")
    content.create_version(CALLER, source, {"id": "full", "released": True})

    base = "/orgs/Bench/sources/Big/full/?includeConcepts=true&includeMappings=true&limit=500"
    keys = [(item["updated_on"], item["type"], item["id"]) for item in domain.repos.items.find(
        {"source": source["url"], "deleted": False}, DIFF_SORT, projection={"updated_on": 1,
                                                                              "type": 1, "id": 1})]
    from app.api.common import encode_cursor
    last_cursor = encode_cursor(DiffCursor(*keys[-501], len(keys))) if len(keys) > 500 else None
    second_cursor = encode_cursor(DiffCursor(*keys[499], len(keys))) if len(keys) > 500 else None

    def first_page() -> None:
        assert client.get(base).status_code == 200

    def second_page() -> None:
        assert client.get(f"{base}&cursor={second_cursor}" if second_cursor else base).status_code == 200

    def last_page() -> None:
        answer = client.get(f"{base}&cursor={last_cursor}" if last_cursor else base)
        assert answer.status_code == 200 and "next" not in answer.headers

    first = timed(first_page)
    second = timed(second_page)
    last = timed(last_page)
    print(f"items loaded            {total:>10,}  in {load_seconds:8.2f} s  "
          f"= {total / load_seconds:,.0f} items/s (through the domain, one item version each)")
    print(f"first diff page (500)   {first * 1000:10.1f} ms   (also counts num_found, once per pass)")
    print(f"second diff page (500)  {second * 1000:10.1f} ms")
    print(f"last diff page (500)    {last * 1000:10.1f} ms   ratio last/first = {last / first:.2f}, "
          f"last/second = {last / second:.2f}")
    print(f"cut version at 1k       {cut_times['1k'] * 1000:10.2f} ms")
    print(f"cut version at {total // 1000}k     {cut_times['full'] * 1000:10.2f} ms   "
          f"ratio = {cut_times['full'] / cut_times['1k']:.2f}")


if __name__ == "__main__":
    main()
