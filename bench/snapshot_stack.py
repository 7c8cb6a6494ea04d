"""Benchmark: the OpenMRS module's snapshot runs, from `Date` to `Date`, through the deployed stack,
at full size: a source of about 200,000 items read 100,000 at a time.

    .venv/bin/python bench/snapshot_stack.py                  # ~200,000 ICD-10-CM-shaped lines
    .venv/bin/python bench/snapshot_stack.py --lines 20000    # smaller

The stack is tests/stack.py's (nginx with deploy/nginx/termsync.conf in front of gunicorn with
gunicorn.conf.py, 2 processes, and `termsync worker`), on a new SQLite file, with the default
CONTENT_MAX_LIMIT (100,000). bench/import.py's ICD-10-CM-shaped lines (a tree of codes, each
below a root mapped to its parent) are bulk imported through it and run by the worker; then the
stack's clock is moved a minute on (so that no read falls within the in-flight margin of the
writes, as the module's scheduled runs come long after), and tests/clients/openmrs.py asks as the
module does: `GET {source}?includeMappings=true&includeConcepts=true&includeRetired=true&
limit=100000` with `Compress: true`, the first without `updatedSince`, each next from the `Date`
of the one before (second precision, as the module formats it), until an answer is empty.
Reported: each answer's items and seconds to the last byte; whether every item arrived
exactly once (it must), and the import's rate through the stack.
"""

from __future__ import annotations

import argparse
import importlib
import shutil
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.clients.openmrs import OpenMrsClient  # noqa: E402
from tests.stack import ADMIN_TOKEN, Stack  # noqa: E402

SOURCE = "/orgs/Bench/sources/Synthetic/"  # bench/import.py's ICD-10-CM-shaped lines name it


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lines", type=int, default=200_000)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="termsync-bench-snapshots-"))
    try:
        lines_file = work / "icd10cm.jsonl"
        importlib.import_module("bench.import").write_icd10cm_file(lines_file, args.lines)
        with Stack(work / "stack", settings={"TERMSYNC_LOG_LEVEL": "ERROR"}) as stack:
            stack.call("POST", "/orgs/", 201, json={"id": "Bench"})
            stack.call("POST", "/orgs/Bench/sources/", 201, json={"id": "Synthetic"})
            started = time.perf_counter()
            job = stack.import_lines(lines_file.read_text(encoding="utf-8"), deadline=3600)
            imported = time.perf_counter() - started
            summary = job["summary"]
            assert not summary["failed"], summary
            items = int(summary["created"])
            print(f"imported {items:,} items ({summary}) in {imported:.1f} s through the stack "
                  f"= {items / imported:,.0f} lines/s", flush=True)
            stack.clock.advance(60)

            client = OpenMrsClient(f"{stack.url}{SOURCE}", token=ADMIN_TOKEN)
            received: Counter[str] = Counter()
            since = None
            for run in range(1, 100):
                begin = time.perf_counter()
                answer = client.fetch_snapshot(since)
                seconds = time.perf_counter() - begin
                urls = [item["url"] for item in answer.concepts + answer.mappings]
                print(f"run {run}: from {since or 'the start'}: {len(urls):,} items in "
                      f"{seconds:.1f} s; Date {answer.updated_to}", flush=True)
                if not urls:
                    break
                assert since is None or answer.updated_to >= since
                received.update(urls)
                since = answer.updated_to
            twice = sum(1 for count in received.values() if count > 1)
            print(f"{len(received):,} items received of {items:,} in {run - 1} answers; "
                  f"received more than once: {twice}", flush=True)
            assert len(received) == items and twice == 0
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
