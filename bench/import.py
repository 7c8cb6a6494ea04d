"""Bulk-import benchmark: a synthetic OCL JSON-lines file through POST /importers/bulk-import/.

Half concepts, half mappings (between those concepts) into one source, on the embedded default
database (a new SQLite file) and on every other --database-uri given (`mongomock://` for
contrast, `mongodb://...` for a real server). Reports lines/s, wall time and RSS for a first
import and for a re-import where every line is unchanged, and the ratio of each backend's rate to
the first's. Each size and backend runs in its own process, so peak RSS figures do not mix.

    .venv/bin/python bench/import.py --lines 20000
    .venv/bin/python bench/import.py --lines 200000 --database-uri sqlite --database-uri mongomock://
    .venv/bin/python bench/import.py --shape icd10cm   # an ICD-10-CM-shaped tree with mappings
    .venv/bin/python bench/import.py --shape mixed --shape icd10cm-concepts --shape icd10cm
    .venv/bin/python bench/import.py --lines 200000 --shape icd10cm-shuffled  # interleaved
    .venv/bin/python bench/import.py --shape icd10cm-shuffled --statements  # time per statement
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

ADMIN_TOKEN = "bench-admin-token"
HEADERS = {"Authorization": f"Token {ADMIN_TOKEN}"}
SOURCE = "/orgs/Bench/sources/Synthetic/"


def icd10cm_code(number: int) -> str:
    """The number-th of a set of codes shaped as ICD-10-CM's (a letter, two digits, a suffix)."""
    return f"{chr(65 + number % 26)}{number // 26 % 100:02d}.{number // 2600}"


def icd10cm_names(code: str) -> list[dict[str, Any]]:
    """A fully specified and a short name, as OCL's ICD-10-CM concepts have."""
    return [{"name": f"Diagnosis {code}, unspecified site of the condition", "locale": "en",
             "locale_preferred": True, "name_type": "FULLY_SPECIFIED"},
            {"name": f"Diag {code}", "locale": "en", "locale_preferred": False,
             "name_type": "SHORT"}]


def write_icd10cm_concepts_file(path: Path, lines: int, shuffled: bool = False) -> None:
    """`lines` concepts as the ICD-10-CM shape had them before it had mappings (a code, a fully
    specified and a short name, billable flags and the parent code in extras, a parent concept
    url): the earlier figures' file, for comparison. In code order, or `shuffled`: letters
    interleaved."""
    codes = [icd10cm_code(number) for number in range(lines)]
    if not shuffled:
        codes.sort()
    with open(path, "w", encoding="utf-8") as handle:
        for number, code in enumerate(codes):
            parent = code.split(".")[0]
            handle.write(json.dumps({
                "type": "Concept", "owner": "Bench", "source": "Synthetic", "id": code,
                "concept_class": "Diagnosis", "datatype": "N/A", "retired": False,
                "names": icd10cm_names(code),
                "extras": {"is_billable": number % 3 != 0, "parent_code": parent},
                "parent_concept_urls": [f"{SOURCE}concepts/{parent}/"]}) + "\n")


ICD_FANOUT = 10  # children of a category, and of each subcategory


def icd10cm_tree(lines: int) -> list[tuple[str, str | None]]:
    """(code, parent code) of a tree shaped as ICD-10-CM's, in code order, with as many codes as
    make `lines` lines with one mapping line per code below a root: categories (a letter, two
    digits: A00) with subcategories (a fourth character: A00.0) and codes (a fifth: A00.01)."""
    codes: list[tuple[str, str | None]] = []
    total = 0
    for category in range(26 * 100):
        root = f"{chr(65 + category // 100)}{category % 100:02d}"
        family: list[tuple[str, str | None]] = [(root, None)]
        for sub in range(ICD_FANOUT):
            family.append((f"{root}.{sub}", root))
            family.extend((f"{root}.{sub}{leaf}", f"{root}.{sub}") for leaf in range(ICD_FANOUT))
        for code, parent in family:
            if total >= lines:
                return codes
            codes.append((code, parent))
            total += 1 if parent is None else 2
    raise SystemExit(f"--shape icd10cm makes at most {total} lines")


def write_icd10cm_file(path: Path, lines: int, shuffled: bool = False) -> None:
    """About `lines` lines shaped as OCL's ICD-10-CM source is: concepts (a code, a fully
    specified and a short name, a description, extras with lists: inclusion terms and codes
    excluded, billable flag, parent code; a parent concept url), then one mapping line per code
    below a root, from the code to its parent (NARROWER-THAN, without an id: the server numbers
    it). In code order, as the CMS order file (and so OCL's ICD-10-CM import) lists them, or
    `shuffled`: concepts interleaved among themselves and so are mappings, so that consecutive
    lines land far apart in every index keyed by id (the worst case for the indexes' upkeep:
    each line dirties its own pages)."""
    import random

    concepts = icd10cm_tree(lines)
    links = [(code, parent) for code, parent in concepts if parent is not None]
    if shuffled:
        random.Random(10).shuffle(concepts)
        random.Random(11).shuffle(links)
    with open(path, "w", encoding="utf-8") as handle:
        for number, (code, parent) in enumerate(concepts):
            handle.write(json.dumps({
                "type": "Concept", "owner": "Bench", "source": "Synthetic", "id": code,
                "concept_class": "Diagnosis", "datatype": "N/A", "retired": False,
                "names": icd10cm_names(code),
                "descriptions": [{"description": f"Condition {code} as the tabular list "
                                                 "describes it, with its notes", "locale": "en",
                                  "description_type": "Definition"}],
                "extras": {"is_billable": len(code) == 6, "parent_code": parent,
                           "inclusion_terms": [f"Inclusion {code} a", f"Inclusion {code} b"],
                           "excludes1": [f"{chr(65 + number % 26)}{number % 100:02d}"]},
                **({"parent_concept_urls": [f"{SOURCE}concepts/{parent}/"]} if parent else {}),
            }) + "\n")
        for code, parent in links:
            handle.write(json.dumps({
                "type": "Mapping", "owner": "Bench", "source": "Synthetic",
                "map_type": "NARROWER-THAN", "from_concept_url": f"{SOURCE}concepts/{code}/",
                "to_concept_url": f"{SOURCE}concepts/{parent}/"}) + "\n")


SHAPES = ("mixed", "icd10cm", "icd10cm-shuffled", "icd10cm-concepts",
          "icd10cm-concepts-shuffled")


def write_file(path: Path, lines: int, shape: str = "mixed") -> None:
    """`lines` OCL lines (about as many for 'icd10cm'): lines/2 concepts, then lines/2 mappings
    between them; or ICD-10-CM-shaped ones (see `write_icd10cm_file`; 'icd10cm-concepts': the
    concepts-only shape of earlier figures), in code order or '-shuffled'."""
    shuffled = shape.endswith("-shuffled")
    if shape.startswith("icd10cm-concepts"):
        write_icd10cm_concepts_file(path, lines, shuffled)
        return
    if shape.startswith("icd10cm"):
        write_icd10cm_file(path, lines, shuffled)
        return
    concepts = lines // 2
    mappings = lines - concepts
    with open(path, "w", encoding="utf-8") as handle:
        for number in range(concepts):
            handle.write(json.dumps({
                "type": "Concept", "owner": "Bench", "source": "Synthetic", "id": str(number),
                "concept_class": "Diagnosis", "datatype": "N/A",
                "names": [{"name": f"Synthetic concept {number}", "locale": "en",
                           "locale_preferred": True, "name_type": "FULLY_SPECIFIED"}],
                "descriptions": [{"description": f"Concept number {number} of the benchmark",
                                  "locale": "en"}],
                "extras": {"bench": True}}) + "\n")
        for number in range(mappings):
            handle.write(json.dumps({
                "type": "Mapping", "owner": "Bench", "source": "Synthetic", "id": str(number),
                "map_type": "NARROWER-THAN",
                "from_concept_url": f"{SOURCE}concepts/{number % concepts}/",
                "to_concept_url": f"{SOURCE}concepts/{(number * 7 + 1) % concepts}/"}) + "\n")


class RssSampler:
    """Samples this process's resident set size every 20 ms; `peak()` since the last reset."""

    def __init__(self) -> None:
        self._peak = 0
        self._stop = threading.Event()
        self._page = os.sysconf("SC_PAGE_SIZE")
        threading.Thread(target=self._loop, daemon=True).start()

    def current(self) -> int:
        with open("/proc/self/statm") as handle:
            return int(handle.read().split()[1]) * self._page

    def _loop(self) -> None:
        while not self._stop.wait(0.02):
            self._peak = max(self._peak, self.current())

    def reset(self) -> int:
        self._peak = self.current()
        return self._peak

    def peak(self) -> int:
        return max(self._peak, self.current())


class StatementTimer:
    """Times every SQL statement of the SQLite store (`--statements`): where a first import's
    time goes in the database, statement by statement."""

    def __init__(self) -> None:
        from app.store.sqlite import db

        self.totals: dict[str, list[float]] = {}
        self.timing = False
        connect = db.SqliteDatabase.connection
        timer = self

        class Timed:
            def __init__(self, connection: Any) -> None:
                self.connection = connection

            def __getattr__(self, name: str) -> Any:
                return getattr(self.connection, name)

            def execute(self, sql: str, params: Any = ()) -> Any:
                if not timer.timing:
                    return self.connection.execute(sql, params)
                started = time.perf_counter()
                try:
                    return self.connection.execute(sql, params)
                finally:
                    total = timer.totals.setdefault(" ".join(sql.split())[:90], [0, 0.0])
                    total[0] += 1
                    total[1] += time.perf_counter() - started

        def timed(database: Any) -> Any:
            return Timed(connect(database))

        db.SqliteDatabase.connection = timed  # type: ignore[method-assign,assignment]

    def top(self, count: int = 8) -> list[dict[str, Any]]:
        ranked = sorted(self.totals.items(), key=lambda item: -item[1][1])[:count]
        return [{"statement": sql, "calls": int(calls), "seconds": round(seconds, 2),
                 "us_each": round(seconds / calls * 1e6, 1)} for sql, (calls, seconds) in ranked]


def run_one(lines: int, database_uri: str, batch_size: int,
            synchronous: str = "NORMAL", shape: str = "mixed",
            statements: bool = False) -> dict[str, Any]:
    """Import a fresh file twice in this process; return the figures."""
    import logging

    timer = StatementTimer() if statements else None

    logging.disable(logging.WARNING)
    from app import create_app

    sampler = RssSampler()
    workdir = Path(tempfile.mkdtemp(prefix="termsync-bench-"))
    data = workdir / "synthetic.jsonl"
    write_file(data, lines, shape)
    with open(data, "rb") as handle:
        lines = sum(1 for _ in handle)  # an ICD-10-CM tree ends where a family ends
    if database_uri == "sqlite":
        database_uri = f"sqlite:///{workdir / 'termsync.db'}"
    app = create_app({"DATABASE_URI": database_uri, "SQLITE_SYNCHRONOUS": synchronous,
                      "MONGO_DB": f"bench_{os.getpid()}",
                      "ADMIN_TOKEN": ADMIN_TOKEN, "TESTING": True, "LOG_LEVEL": "ERROR",
                      "IMPORT_DIR": str(workdir / "uploads"), "IMPORT_BATCH_SIZE": batch_size,
                      "IMPORT_MAX_LINES": max(lines * 2, 10)})
    client = app.test_client()
    assert client.post("/orgs/", json={"id": "Bench"}, headers=HEADERS).status_code == 201
    assert client.post("/orgs/Bench/sources/", json={"id": "Synthetic"},
                       headers=HEADERS).status_code == 201
    workers = app.extensions["termsync.jobs"]
    figures: dict[str, Any] = {"database": database_uri.split(":")[0], "synchronous": synchronous,
                               "shape": shape, "lines": lines,
                               "file_mb": round(data.stat().st_size / 2**20, 1)}
    for phase in ("first", "reimport"):
        baseline = sampler.reset()
        started = time.perf_counter()
        with open(data, "rb") as handle:  # input_stream: the test client must not read it whole
            answer = client.post("/importers/bulk-import/", input_stream=handle,
                                 content_type="application/x-ndjson", headers=HEADERS)
        assert answer.status_code == 202, answer.get_json()
        uploaded = time.perf_counter()
        upload_peak = sampler.peak()
        if timer is not None:
            timer.timing = phase == "first"
        workers.run_until_idle()
        finished = time.perf_counter()
        if timer is not None:
            timer.timing = False
        job = client.get(f"/importers/bulk-import/{answer.get_json()['id']}/",
                         headers=HEADERS).get_json()
        assert job["state"] == "FINISHED", job
        wall = finished - started
        figures[phase] = {
            "summary": {key: value for key, value in job["summary"].items() if value},
            "wall_s": round(wall, 1), "upload_s": round(uploaded - started, 2),
            "lines_per_s": round(lines / wall),
            "rss_before_mb": round(baseline / 2**20),
            "upload_rss_delta_mb": round((upload_peak - baseline) / 2**20, 1),
            "peak_rss_mb": round(sampler.peak() / 2**20),
            "job_rss_delta_mb": round((sampler.peak() - baseline) / 2**20)}
    if timer is not None:
        figures["first"]["statements"] = timer.top()
    return figures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lines", type=int, action="append",
                        help="lines in the file (repeat to compare sizes); default 200000")
    parser.add_argument("--database-uri", action="append",
                        help="'sqlite' (a new file, the default), mongomock:// or mongodb://...; "
                             "repeat to compare")
    parser.add_argument("--batch-size", type=int, default=500)
    parser.add_argument("--synchronous", default="NORMAL",
                        help="SQLite's synchronous setting (NORMAL, FULL) for the SQLite runs")
    parser.add_argument("--shape", choices=SHAPES, action="append",
                        help="mixed (the default): half concepts, half mappings with ids; "
                             "icd10cm: an ICD-10-CM-shaped tree, its concepts (names, a "
                             "description, extras with lists) then a mapping of each code to "
                             "its parent, in code order as ICD-10-CM files are; "
                             "icd10cm-shuffled: interleaved; icd10cm-concepts[-shuffled]: the "
                             "concepts-only shape of earlier figures. Repeat to compare shapes "
                             "in one run")
    parser.add_argument("--statements", action="store_true",
                        help="time every SQL statement of the first import (SQLite; slower)")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    sizes = args.lines or [200_000]
    databases = args.database_uri or ["sqlite"]
    shapes = args.shape or ["mixed"]
    if args.child:
        print(json.dumps(run_one(sizes[0], databases[0], args.batch_size, args.synchronous,
                                 shapes[0], args.statements)))
        return 0
    results = []
    for size in sizes:
        rates: dict[tuple[str, str], int] = {}
        for shape in shapes:
            for database in databases:
                output = subprocess.run(
                    [sys.executable, __file__, "--child", "--lines", str(size), "--database-uri",
                     database, "--batch-size", str(args.batch_size), "--synchronous",
                     args.synchronous, "--shape", shape,
                     *(["--statements"] if args.statements else [])],
                    check=True, capture_output=True, text=True).stdout
                figures = json.loads(output.strip().splitlines()[-1])
                rates[shape, database] = figures["first"]["lines_per_s"]
                print(json.dumps(figures, indent=2), flush=True)
                if database == databases[0] and shape == shapes[0]:
                    results.append(figures)
        first = (shapes[0], databases[0])
        for (shape, database), rate in rates.items():
            if (shape, database) != first:
                print(f"{size} lines: {shape} on {database} imports at {rate} lines/s, "
                      f"{rate / rates[first]:.2f}x {first[0]} on {first[1]}", flush=True)
    if len(results) > 1:
        small, large = results[0], results[-1]
        print(f"size ratio {large['lines'] / small['lines']:.0f}x: upload RSS delta "
              f"{small['first']['upload_rss_delta_mb']} MB -> "
              f"{large['first']['upload_rss_delta_mb']} MB; peak RSS "
              f"{small['first']['peak_rss_mb']} MB -> {large['first']['peak_rss_mb']} MB "
              f"(x{large['first']['peak_rss_mb'] / small['first']['peak_rss_mb']:.2f})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
