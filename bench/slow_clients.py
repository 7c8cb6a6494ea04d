"""Benchmark: probes while slow clients hold connections, on the documented deployment (nginx with
deploy/nginx/termsync.conf in front of gunicorn) and on gunicorn alone.

    .venv/bin/python bench/slow_clients.py                   # 50 slow clients, 20 s a phase
    .venv/bin/python bench/slow_clients.py --slow 10 --seconds 10 --only stack

A new SQLite database gets a released version whose export is about 9 MB (`--concepts`; not
timed). Each deployment serves it as tests/stack.py starts it (gunicorn.conf.py, 2 processes x
its 4 threads; no job worker: nothing is queued), and goes through three phases of `--seconds`:

- idle: no slow clients (the baseline, measured in the same run the same way);
- senders: `--slow` connections that each send `POST /console/sign-in` with `Content-Length:
  100000`, then one byte a second (tests.stack.SlowClients);
- readers: `--slow` connections that each `GET` the export with a 4 KiB receive buffer, then
  read 1 KiB a second.

Throughout a phase two probers send requests one after the other, each on a new connection with
a 5 s timeout, as a monitor does: `GET /healthz` and `HEAD` of the export. Reported per phase and
probe: how many answered, p50, p99 and the slowest in ms, how many timed out (or failed), and
the p99 as a ratio to the idle phase of the same deployment.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.stack import ADMIN_TOKEN, SlowClients, Stack  # noqa: E402

SOURCE = "/orgs/Bench/sources/Slow/"
EXPORT = f"{SOURCE}v1/export/"
PROBE_TIMEOUT = 5.0


def seed(root: Path, concepts: int) -> int:
    """A released version with its export built, in the database the stack will serve; the
    export's size in bytes."""
    from app import create_app

    app = create_app({"DATABASE_URI": f"sqlite:///{root / 'termsync.db'}", "TESTING": True,
                      "EXPORT_DIR": str(root / "exports"), "IMPORT_DIR": str(root / "imports"),
                      "ADMIN_TOKEN": ADMIN_TOKEN, "LOG_LEVEL": "WARNING"})
    client = app.test_client()
    admin = {"Authorization": f"Token {ADMIN_TOKEN}"}
    assert client.post("/orgs/", json={"id": "Bench"}, headers=admin).status_code == 201
    assert client.post("/orgs/Bench/sources/", json={"id": "Slow"}, headers=admin).status_code == 201
    owner = {"type": "Concept", "owner": "Bench", "owner_type": "Organization", "source": "Slow"}
    lines = "".join(json.dumps({
        **owner, "id": str(number), "concept_class": "Diagnosis", "datatype": "N/A",
        "names": [{"name": f"Condition {number}", "locale": "en", "locale_preferred": True,
                   "name_type": "FULLY_SPECIFIED"}],
        # hard to compress, so that the export is as large as a real dictionary's
        "descriptions": [{"description": os.urandom(1500).hex(), "locale": "en"}]}) + "\n"
        for number in range(concepts))
    answer = client.post("/importers/bulk-import/", data=lines.encode(), headers={
        **admin, "Content-Type": "application/x-ndjson"})
    assert answer.status_code == 202, answer.get_json()
    app.extensions["termsync.jobs"].run_until_idle()
    assert client.post(f"{SOURCE}versions/", json={"id": "v1", "released": True},
                       headers=admin).status_code == 201
    app.extensions["termsync.jobs"].run_until_idle()
    head = client.head(EXPORT)
    assert head.status_code == 200, head.status_code
    app.extensions["termsync.store"].close()
    return int(head.headers["Content-Length"])


def probe(url: str, method: str, seconds: float, samples: list[float | None]) -> None:
    """Requests one after the other for `seconds`, each on a new connection; each latency in
    ms (None: timed out or failed)."""
    until = time.monotonic() + seconds
    while time.monotonic() < until:
        started = time.perf_counter()
        try:
            answer = requests.request(method, url, timeout=PROBE_TIMEOUT)
            ok = answer.status_code == 200
        except requests.RequestException:
            ok = False
        samples.append((time.perf_counter() - started) * 1000 if ok else None)


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def phase(url: str, seconds: float) -> dict[str, dict[str, float]]:
    """Both probers at once for `seconds`; their figures."""
    samples: dict[str, list[float | None]] = {"healthz": [], "head": []}
    threads = [threading.Thread(target=probe, args=(url + "/healthz", "GET", seconds,
                                                    samples["healthz"])),
               threading.Thread(target=probe, args=(url + EXPORT, "HEAD", seconds,
                                                    samples["head"]))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    figures = {}
    for name, values in samples.items():
        answered = [value for value in values if value is not None]
        figures[name] = {
            "answered": len(answered), "failed": len(values) - len(answered),
            "p50": statistics.median(answered) if answered else float("nan"),
            "p99": percentile(answered, 0.99) if answered else float("nan"),
            "max": max(answered) if answered else float("nan")}
    return figures


def measure(root: Path, proxy: bool, args: argparse.Namespace) -> None:
    """One deployment through the three phases."""
    name = "nginx → gunicorn (deploy/nginx/termsync.conf)" if proxy else "gunicorn alone"
    with Stack(root, proxy=proxy, web_processes=2, worker=False,
               settings={"TERMSYNC_LOG_LEVEL": "ERROR"}) as stack:
        phase(stack.url, 2.0)  # warm-up: every process has served
        idle: dict[str, dict[str, float]] = {}
        for kind in ("idle", "senders", "readers"):
            slow = SlowClients(stack.url, args.slow, kind, EXPORT) if kind != "idle" else None
            if slow is not None:
                time.sleep(2.0)  # the slow requests arrive and are taken on
            try:
                figures = phase(stack.url, args.seconds)
            finally:
                if slow is not None:
                    slow.close()
            if kind == "idle":
                idle = figures
            for probe_name, row in figures.items():
                ratio = row["p99"] / idle[probe_name]["p99"] if idle[probe_name]["p99"] else 0
                print(f"{name:48} {kind:8} {args.slow if slow else 0:>3} slow  "
                      f"{'GET /healthz' if probe_name == 'healthz' else 'HEAD export':12} "
                      f"answered {row['answered']:5.0f}  p50 {row['p50']:7.1f} ms  "
                      f"p99 {row['p99']:7.1f} ms  max {row['max']:7.1f} ms  "
                      f"timed out {row['failed']:3.0f}  p99/idle {ratio:6.1f}", flush=True)
            time.sleep(1.0)  # connections the slow clients left are closed before the next


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--slow", type=int, default=50, help="slow connections a phase")
    parser.add_argument("--seconds", type=float, default=20.0, help="length of a phase")
    parser.add_argument("--concepts", type=int, default=5000,
                        help="concepts of the released version (5,000: an export of ~9 MB)")
    parser.add_argument("--only", choices=("stack", "bare"))
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="termsync-bench-slow-"))
    try:
        deployments = [proxy for proxy in (True, False)
                       if args.only is None or args.only == ("stack" if proxy else "bare")]
        for proxy in deployments:
            root = work / ("stack" if proxy else "bare")
            root.mkdir()
            size = seed(root, args.concepts)
            print(f"export {size / 1e6:.1f} MB; {os.cpu_count()} CPUs shared with the clients",
                  flush=True)
            measure(root, proxy, args)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
