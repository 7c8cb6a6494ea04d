"""Benchmark: the console's pages at ICD-10-CM size, against the JSON API in the same run.

    .venv/bin/python bench/console.py                       # 200,000 items, embedded SQLite
    .venv/bin/python bench/console.py --items 20000
    .venv/bin/python bench/console.py --database-uri mongodb://localhost:27017 --items 20000

Loads a source of `--items` items (half concepts, half mappings between them) through the
store's bulk load (the repository `termsync db copy` writes with, not HTTP), releases it as v1,
then changes it through the domain as curators would (`--changes` concepts updated, a tenth as
many created, retired and deleted), so that "changes since the last release" has work to do.
Every page is requested through the Flask test client with a signed-in console session, so the
figure is the server's whole time for the request (routing, session, rights, queries, template);
the median of `--repeat` requests after one warm-up. Baselines from the same run: the JSON API's
GET of the same source (what the source page shows most of: the source and its checksum) and of
a page of 50 concepts. The budget is 300 ms for the source page and a concept list page of 50.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from typing import Any

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from app import create_app
from app.domain import ocl
from app.domain.accounts import ORG, Caller, Owner
from app.model import CONCEPT, LIVE, MAPPING, Source
from app.timeutil import now_iso

TOKEN = "bench-console-admin-token-0123456789abcdef"
ADMIN = {"Authorization": f"Token {TOKEN}"}
CALLER = Caller(username="admin", is_admin=True)
BUDGET_MS = 300.0
CLASSES = ("Diagnosis", "Finding", "Procedure", "Symptom", "Misc")
CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


def concept_data(number: int) -> dict[str, Any]:
    return {"concept_class": CLASSES[number % len(CLASSES)],
            "datatype": "Coded" if number % 7 == 0 else "N/A", "external_id": None,
            "extras": {"chapter": number % 22}, "parent_concept_urls": [],
            "update_comment": None,
            "names": [{"name": f"Synthetic condition {number} {kind.lower()}", "locale": locale,
                       "locale_preferred": kind == "FULLY_SPECIFIED", "name_type": kind,
                       "external_id": None}
                      for kind, locale in (("FULLY_SPECIFIED", "en"), ("SHORT", "en"),
                                           ("FULLY_SPECIFIED", "fr"))],
            "descriptions": [{"description": f"Synthetic concept number {number}.",
                              "locale": "en", "locale_preferred": True,
                              "description_type": "Definition", "external_id": None}]}


def synthetic(source: Source, items: int) -> Iterator[dict[str, Any]]:
    """Item versions of `items // 2` concepts and as many mappings (each concept to the next)."""
    concepts = items // 2
    now = now_iso()

    def item(kind: str, item_id: str, seq: int, data: dict[str, Any]) -> dict[str, Any]:
        return {"source": source.url, "type": kind, "id": item_id,
                "url": ocl.item_url(source.url, kind, item_id), "seq": seq, "sup": LIVE,
                "deleted": False, "retired": False, "updated_on": now, "created_on": now,
                "created_by": "bench", "updated_by": "bench", "data": data}

    for number in range(concepts):
        yield item(CONCEPT, f"C{number:07d}", number + 1, concept_data(number))
    for number in range(items - concepts):
        code = number % concepts
        yield item(MAPPING, str(number + 1), concepts + number + 1, {
            "map_type": "SAME-AS" if number % 2 else "NARROWER-THAN",
            "from_concept_url": ocl.item_url(source.url, CONCEPT, f"C{code:07d}"),
            "to_concept_url": ocl.item_url(source.url, CONCEPT, f"C{(code + 1) % concepts:07d}"),
            "to_source_url": None, "to_concept_code": None, "to_concept_name": None,
            "external_id": None, "extras": {}, "sort_weight": None, "update_comment": None})


def timed(client: Any, url: str, repeat: int, headers: dict[str, str] | None = None) -> float:
    """Median milliseconds of `repeat` GETs (after one warm-up), the body read each time."""
    answer = client.get(url, headers=headers)
    assert answer.status_code == 200, (url, answer.status_code, answer.text[:500])
    samples = []
    for _ in range(repeat):
        start = time.perf_counter()
        answer = client.get(url, headers=headers)
        answer.get_data()
        samples.append((time.perf_counter() - start) * 1000)
        assert answer.status_code == 200, (url, answer.status_code)
    return statistics.median(samples)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--items", type=int, default=200_000)
    parser.add_argument("--changes", type=int, default=1000,
                        help="concepts updated after the release (a tenth as many created, "
                             "retired and deleted)")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--database-uri", default=None,
                        help="default: a new SQLite file in a temporary directory")
    args = parser.parse_args()

    directory = tempfile.mkdtemp(prefix="termsync-bench-console-")
    uri = args.database_uri or f"sqlite:///{directory}/console.db"
    app = create_app({"DATABASE_URI": uri, "MONGO_DB": "termsync_bench_console",
                      "ADMIN_TOKEN": TOKEN, "TESTING": True, "LOG_LEVEL": "WARNING",
                      "ACCESS_LOG": False, "EXPORT_ON_RELEASE": False,
                      "EXPORT_DIR": f"{directory}/exports", "IMPORT_DIR": f"{directory}/imports"})
    domain = app.extensions["termsync"]
    store = app.extensions["termsync.store"]
    content = domain.content
    domain.accounts.create_org(CALLER, {"id": "Bench"})
    source = content.create_source(CALLER, Owner(ORG, "Bench"),
                                   {"id": "Big", "name": "ICD-10-CM sized", "default_locale": "en"})

    started = time.perf_counter()
    count = store.items.load(synthetic(source, args.items))
    store.sources.update(source.url, seq=count, last_updated=now_iso(),
                         mapping_counter=args.items - args.items // 2)
    store.items.recompute_checksums()
    load_seconds = time.perf_counter() - started
    source = store.sources.get(source.url)
    content.create_version(CALLER, source, {"id": "v1", "released": True})

    started = time.perf_counter()
    concepts = args.items // 2
    tenth = max(1, args.changes // 10)
    for number in range(min(args.changes, concepts)):
        data = dict(concept_data(number), datatype="Text", id=f"C{number:07d}")
        content.save_concept(CALLER, source, data)
    for number in range(tenth):
        content.save_concept(CALLER, source, dict(concept_data(concepts + number),
                                                  id=f"N{number:07d}"), expect="new")
        content.delete_item(CALLER, source, CONCEPT, f"C{concepts - 1 - number:07d}", hard=False)
        content.delete_item(CALLER, source, CONCEPT, f"C{concepts - 1 - tenth - number:07d}",
                            hard=True)
    change_seconds = time.perf_counter() - started

    console = app.test_client()
    form = console.get("/console/sign-in")
    answer = console.post("/console/sign-in", data={
        "csrf_token": CSRF.search(form.text).group(1), "token": TOKEN})  # type: ignore[union-attr]
    assert answer.status_code == 303, answer.status_code
    api = app.test_client()
    base = "/orgs/Bench/sources/Big/"
    page = f"/console{base}"
    figures = {
        "source page": timed(console, page, args.repeat),
        "concept list, first 50": timed(console, f"{page}concepts/", args.repeat),
        "concept list, last page": timed(console, f"{page}concepts/?page={max(1, concepts // 50)}",
                                         args.repeat),
        "concept list, by class": timed(console, f"{page}concepts/?concept_class=Finding",
                                        args.repeat),
        "concept list, at v1": timed(console, f"{page}concepts/?version=v1", args.repeat),
        "concept list, text (common)": timed(console, f"{page}concepts/?q=condition+1",
                                             args.repeat),
        "concept list, text (rare)": timed(console, f"{page}concepts/?q=condition+12345+",
                                           args.repeat),
        "concept page": timed(console, f"{page}concepts/C0000042/", args.repeat),
        "API: GET source": timed(api, base, args.repeat),
        "API: GET 50 concepts": timed(api, f"{base}concepts/?limit=50", args.repeat),
    }
    check = console.get(page).text
    changes = re.search(r'<ul class="cards" id="changes">(.*?)</ul>', check, re.S)
    shown = " ".join(re.sub(r"<[^>]+>", " ", changes.group(1)).split()) if changes else "?"

    print(f"database          {store.kind} ({uri})")
    print(f"items loaded      {count:>10,}  in {load_seconds:6.1f} s (bulk, through the store)")
    print(f"changes applied   {min(args.changes, concepts) + 3 * tenth:>10,}  in "
          f"{change_seconds:6.1f} s (through the domain); the page shows: {shown}")
    print(f"median of {args.repeat} requests, server time (Flask test client), milliseconds:")
    for name, value in figures.items():
        print(f"  {name:<30} {value:8.1f}")
    source_ratio = figures["source page"] / figures["API: GET source"]
    list_ratio = figures["concept list, first 50"] / figures["API: GET 50 concepts"]
    print(f"ratio source page / API GET source          {source_ratio:6.2f}")
    print(f"ratio concept list (50) / API 50 concepts    {list_ratio:6.2f}")
    within = figures["source page"] < BUDGET_MS and figures["concept list, first 50"] < BUDGET_MS
    print(f"budget {BUDGET_MS:.0f} ms for the source page and a concept list page of 50: "
          f"{'met' if within else 'MISSED'}")
    store.drop()
    shutil.rmtree(directory, ignore_errors=True)
    return 0 if within else 1


if __name__ == "__main__":
    sys.exit(main())
