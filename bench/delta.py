"""Benchmark: a delta package against the whole export, and a subscriber's move from one release
to the next through it against through diffs, in the same run.

    .venv/bin/python bench/delta.py                        # 200,000 items, 1% changed, 3 rounds
    .venv/bin/python bench/delta.py --items 30000 --rounds 1
    .venv/bin/python bench/delta.py --percent 10           # a release that changes 10%

A source of N items (N/3 concepts with three names and a description, two mappings each) is
bulk-loaded on SQLite, stamped a day ago (one concept edited since), and released as v1. A
subscriber (release mode, SQLite store) takes v1 from its export. Then about 1% of the items
change through the domain (edits of concepts and mappings, retirements, hard deletes, new
concepts: real item writes) and v2 is released. Measured, `--rounds` times each, interleaved:

- building v2's export and v2's delta package from v1 (the export job, in this process): seconds,
  bytes, and the build's own peak memory (VmHWM during the build minus RSS before it);
- the subscriber's move from v1 to v2, each round from a fresh copy of its v1 database: through
  the delta package (one download, checked, applied all or nothing, checked), and through diffs
  (500 items a page, as against a server without deltas: that copy names a base the server has
  no delta from, so it is answered 400 and the subscriber follows the diff), the convergence
  check included in both. The server runs in a child process on loopback.

Figures are medians with the spread (min-max) of the rounds; ratios compare figures of this run.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from export_build import _reset_peak, _status_kb, load  # noqa: E402

from app import create_app  # noqa: E402
from app.domain.accounts import Caller  # noqa: E402
from app.exports import export_service  # noqa: E402
from app.model import Version  # noqa: E402
from app.timeutil import format_time  # noqa: E402

ADMIN_TOKEN = "bench-admin-token-of-32-characters-or-more"
CALLER = Caller(username="admin", is_admin=True)
SOURCE = "/orgs/Bench/sources/Synthetic/"


def config(work: Path, **extra: Any) -> dict[str, Any]:
    """The server's configuration: one SQLite file and an export directory under `work`."""
    return {"DATABASE_URI": f"sqlite:///{work / 'server.db'}", "ADMIN_TOKEN": ADMIN_TOKEN,
            "EXPORT_DIR": str(work / "exports"), "IMPORT_DIR": str(work / "imports"),
            "LOG_LEVEL": "WARNING", "EXPORT_ON_RELEASE": False, **extra}


# --- the server, in a child process ------------------------------------------------------------
def serve(work: Path) -> None:
    """Serve the bench's database on a free loopback port (printed first); builds on a thread."""
    from werkzeug.serving import make_server

    app = create_app(config(work, BACKGROUND_WORKERS=1))
    server = make_server("127.0.0.1", 0, app, threaded=True)
    print(server.server_port, flush=True)
    server.serve_forever()


class Server:
    """The child process serving the bench's database."""

    def __init__(self, work: Path) -> None:
        self.process = subprocess.Popen([sys.executable, __file__, "--serve", str(work)],
                                        stdout=subprocess.PIPE, text=True)
        assert self.process.stdout is not None
        self.url = f"http://127.0.0.1:{self.process.stdout.readline().strip()}"

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(30)


# --- the source and its changes ----------------------------------------------------------------
def change(app: Any, items: int, percent: float) -> dict[str, int]:
    """`percent` of the items changed through the domain: {kind of change: how many}."""
    domain = app.extensions["termsync"]
    content = domain.content
    source = domain.content.find_repo(SOURCE)
    concepts = items // 3
    budget = max(10, int(items * percent / 100))
    picked = list(range(0, concepts, max(1, concepts // budget)))  # spread over the source
    counts = dict.fromkeys(("concept edits", "mapping edits", "retirements", "hard deletes",
                            "new items"), 0)
    plan = [("concept edits", 0.35), ("mapping edits", 0.15), ("retirements", 0.15),
            ("hard deletes", 0.10), ("new items", 0.25)]
    cursor = 0
    for kind, share in plan:
        for _ in range(int(budget * share)):
            number = picked[cursor % len(picked)]
            cursor += 1
            code = f"C{number:07d}"
            if kind == "concept edits":
                content.update_concept(CALLER, source, code, {"names": [
                    {"name": f"Edited concept {number}", "locale": "en",
                     "locale_preferred": True, "name_type": "FULLY_SPECIFIED"}]})
            elif kind == "mapping edits":
                content.update_mapping(CALLER, source, str(number * 2 + 1),
                                       {"map_type": "BROADER-THAN"})
            elif kind == "retirements":
                content.delete_item(CALLER, source, "Concept", code, hard=False)
            elif kind == "hard deletes":
                content.delete_item(CALLER, source, "Mapping", str(number * 2 + 2), hard=True)
            else:
                content.save_concept(CALLER, source, {
                    "id": f"N{number:07d}", "concept_class": "Finding", "datatype": "Text",
                    "names": [{"name": f"New concept {number}", "locale": "en",
                               "locale_preferred": True, "name_type": "FULLY_SPECIFIED"}]},
                    expect="new")
            counts[kind] += 1
            source = domain.content.find_repo(SOURCE) or source
    return counts


def build(app: Any, version: Version, base: Version | None) -> dict[str, Any]:
    """Build v2's export (or delta from `base`) in this process: seconds, bytes, peak memory."""
    service = export_service(app)
    domain = app.extensions["termsync"]
    source = domain.content.find_repo(SOURCE)
    with app.app_context():
        service.request(source, version, rebuild=True, base=base)
    rss = _status_kb("VmRSS")
    _reset_peak()
    started = time.perf_counter()
    assert app.extensions["termsync.jobs"].run_until_idle() == 1
    seconds = time.perf_counter() - started
    peak = _status_kb("VmHWM") - rss
    with app.app_context():
        status = service.status(source, version, base)
    assert status.state == "READY", status.state
    assert status.file is not None
    return {"seconds": seconds, "bytes": status.file.size, "peak_mb": peak / 1024}


# --- the subscriber ----------------------------------------------------------------------------
def copy_database(source: Path, target: Path) -> None:
    """A consistent copy of a SQLite database (the backup API, WAL included)."""
    with sqlite3.connect(source) as original, sqlite3.connect(target) as copy:
        original.backup(copy)
    original.close()
    copy.close()


def subscriber_for(server: Server, database: Path, work: Path) -> Any:
    from sync.config import Subscription
    from sync.store import open_store
    from sync.subscriber import build_subscriber

    uri = f"sqlite:///{database}"
    sub = Subscription(name="bench", server=server.url, url=SOURCE, mode="release",
                       token=ADMIN_TOKEN, page_size=500, work_dir=str(work / "downloads"),
                       database_uri=uri)
    return build_subscriber(sub, open_store(uri))


def move(server: Server, base_database: Path, work: Path, through: str) -> dict[str, Any]:
    """One subscriber's move from v1 to v2 from a fresh copy of its v1 database."""
    database = work / f"move-{through}.db"
    for leftover in work.glob(f"move-{through}.db*"):
        leftover.unlink()
    copy_database(base_database, database)
    subscriber = subscriber_for(server, database, work)
    if through == "diffs":  # a base the server has no delta from: 400, then the diff
        state = subscriber.store.load_state("bench")
        state.version = "v1-without-delta"
        subscriber.store.save_state("bench", state)
    started = time.perf_counter()
    checksum = subscriber.store.checksum("bench")  # what reading the whole copy costs
    checksum_seconds = time.perf_counter() - started
    asked: list[str] = []
    subscriber.client.session.hooks["response"].append(
        lambda response, *args, **kwargs: asked.append(response.url))
    started = time.perf_counter()
    result = subscriber.sync()
    seconds = time.perf_counter() - started
    assert checksum
    subscriber.store.close()
    subscriber.client.close()
    assert result.ok, result.error
    assert result.action == ("delta" if through == "delta" else "diff"), result.action
    assert result.version == "v2" and result.checksum == result.server_checksum
    return {"seconds": seconds, "applied": result.applied, "pages": result.pages,
            "requests": len(asked), "checksum_seconds": checksum_seconds}


def diff_volume(server: Server) -> int:
    """Bytes of JSON the diff from v1 to v2 sends, 500 items a page (what the diff path reads,
    where the delta path reads the package's bytes)."""
    import requests

    session = requests.Session()
    session.headers["Authorization"] = f"Token {ADMIN_TOKEN}"
    v1 = session.get(f"{server.url}{SOURCE}v1/", timeout=60).json()
    url: str | None = (f"{server.url}{SOURCE}v2/?includeConcepts=true&includeMappings=true&"
                       f"includeRetired=true&includeDeleted=true&limit=500&updatedSince="
                       f"{v1['lastUpdated']}")
    total = 0
    while url:
        answer = session.get(url, timeout=60)
        total += len(answer.content)
        url = answer.headers.get("next")
    session.close()
    return total


# --- the run -----------------------------------------------------------------------------------
def summary(values: list[float]) -> str:
    return f"{statistics.median(values):.3f} ({min(values):.3f}-{max(values):.3f})"


def run(items: int, rounds: int, percent: float) -> dict[str, Any]:
    """Everything in the module docstring; the figures."""
    work = Path(tempfile.mkdtemp(prefix="termsync-bench-delta-"))
    try:
        app = create_app(config(work, TESTING=True))
        domain = app.extensions["termsync"]
        app.extensions["termsync.store"].orgs.insert({"_id": "Bench", "id": "Bench", "public_access": "View",
                                  "members": []})
        started = time.perf_counter()
        day_ago = format_time(datetime.now(UTC) - timedelta(days=1))
        source, cut, _ = load(app.extensions["termsync.store"], domain, items, now=day_ago)
        domain.content.delete_version(CALLER, source, cut)
        # the newest item of v1 written now, the rest a day ago: a diff from v1's lastUpdated
        # (less the subscriber's minute of overlap) holds what changed since, not everything
        domain.content.update_concept(CALLER, source, "C0000000", {"datatype": "Text"})
        source = domain.content.find_repo(SOURCE)
        v1 = domain.content.create_version(CALLER, source, {"id": "v1", "released": True})
        load_seconds = time.perf_counter() - started
        build(app, v1, None)  # what the first sync downloads
        server = Server(work)
        try:
            base_database = work / "subscriber-v1.db"
            first = subscriber_for(server, base_database, work)
            started = time.perf_counter()
            taken = first.sync()
            first_sync_seconds = time.perf_counter() - started
            assert taken.ok and taken.version == "v1", taken.error
            first.store.close()
            first.client.close()

            started = time.perf_counter()
            counts = change(app, items, percent)
            change_seconds = time.perf_counter() - started
            source = domain.content.find_repo(SOURCE)
            v2 = domain.content.create_version(CALLER, source, {"id": "v2", "released": True})
            builds: dict[str, list[dict[str, Any]]] = {"export": [], "delta": []}
            moves: dict[str, list[dict[str, Any]]] = {"delta": [], "diffs": []}
            for _ in range(rounds):
                builds["export"].append(build(app, v2, None))
                builds["delta"].append(build(app, v2, v1))
            for _ in range(rounds):
                moves["delta"].append(move(server, base_database, work, "delta"))
                moves["diffs"].append(move(server, base_database, work, "diffs"))
            volume = diff_volume(server)
        finally:
            server.stop()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return {"items": items, "changes": counts, "load_seconds": load_seconds,
            "change_seconds": change_seconds, "first_sync_seconds": first_sync_seconds,
            "builds": builds, "moves": moves, "diff_bytes": volume}


def report(figures: dict[str, Any]) -> None:
    builds, moves = figures["builds"], figures["moves"]

    def values(runs: list[dict[str, Any]], key: str) -> list[float]:
        return [float(run[key]) for run in runs]

    changed = sum(figures["changes"].values())
    print(f"{figures['items']:,} items; {changed:,} changes ({figures['changes']}); loaded in "
          f"{figures['load_seconds']:.1f}s, changed in {figures['change_seconds']:.1f}s, first "
          f"sync of v1 {figures['first_sync_seconds']:.1f}s; {len(builds['export'])} rounds")
    for what in ("export", "delta"):
        runs = builds[what]
        print(f"  build {what:6}  {summary(values(runs, 'seconds'))} s  "
              f"{statistics.median(values(runs, 'bytes')) / 2**20:8.3f} MiB  "
              f"build peak {summary(values(runs, 'peak_mb'))} MiB")
    for how in ("delta", "diffs"):
        runs = moves[how]
        print(f"  v1 -> v2 through {how:6} {summary(values(runs, 'seconds'))} s  "
              f"{runs[0]['applied']:,} items applied, {runs[0]['requests']} requests, "
              f"{runs[0]['pages']} diff page(s); reading the whole copy once (its checksum) "
              f"{summary(values(runs, 'checksum_seconds'))} s")
    package = statistics.median(values(builds["delta"], "bytes")) / 2**20
    print(f"  bytes read: the delta package {package:.3f} MiB, the diff's pages "
          f"{figures['diff_bytes'] / 2**20:.3f} MiB of JSON")
    median = {what: {key: statistics.median(values(runs, key)) for key in ("seconds", "bytes")}
              for what, runs in builds.items()}
    move_median = {how: statistics.median(values(runs, "seconds")) for how, runs in moves.items()}
    print(f"  ratios: delta/export size {median['delta']['bytes'] / median['export']['bytes']:.4f}"
          f", delta/export build time "
          f"{median['delta']['seconds'] / median['export']['seconds']:.3f}, move through "
          f"delta/through diffs {move_median['delta'] / move_median['diffs']:.3f}")
    print(json.dumps(figures, default=str), file=sys.stderr)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=200_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--percent", type=float, default=1.0,
                        help="share of the items the second release changes")
    parser.add_argument("--serve", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(Path(args.serve))
        return 0
    report(run(args.items, args.rounds, args.percent))
    return 0


if __name__ == "__main__":
    sys.exit(main())
