"""Load test: gunicorn on loopback, a mixed subscriber workload at increasing concurrency.

    .venv/bin/python bench/load.py                                  # levels 1,4,16,64; 8 s each
    .venv/bin/python bench/load.py --levels 1,8,32 --seconds 5 --concepts 5000 --threads 32

The workload is what subscribers do to a server: 90% HEAD probes of a released version's export
(is there something new?), 9% diff pages (GET the version with includeConcepts/includeMappings,
limit 100, a random updatedSince), 1% full export downloads. Each concurrency level runs for at
most --seconds and --max-requests; every answer is checked for being well formed (status,
headers, JSON shape, byte count and sha256 of downloads) and anything else counts as an error,
as does a connection that fails: nothing may be dropped.

Server: gunicorn with --workers processes of --threads threads (gthread) on the embedded SQLite
database (sqlite:////tmp/.../load.db, seeded beforehand). The load generator runs in this process
(a thread and a requests.Session per simulated client) on the same machine, so both compete for
its CPUs: figures are a floor for a real deployment. `--mix 100,0,0` measures HEAD probes alone.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import requests

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

TOKEN = "bench-load-admin-token-0123456789abcdef"
ADMIN = {"Authorization": f"Token {TOKEN}"}
BASE = "/orgs/Load/sources/Terms/"
EXPORT = f"{BASE}v1/export/"
KINDS = ("probe", "diff", "download")
MIX = tuple(zip(KINDS, (0.90, 0.09, 0.01), strict=True))


# --- seeding (in a child process, as an operator would load the content beforehand) ----------

def seed(database: str, export_dir: str, concepts: int) -> None:
    """Create a released source version with `concepts` concepts and build its export; print
    the updatedSince values the diff requests use, as JSON."""
    from app import create_app
    from app.domain.accounts import Caller
    from app.model import ContentQuery

    app = create_app({"DATABASE_URI": f"sqlite:///{database}", "EXPORT_DIR": export_dir,
                      "ADMIN_TOKEN": TOKEN, "TESTING": True, "LOG_LEVEL": "WARNING"})
    client = app.test_client()
    assert client.post("/orgs/", json={"id": "Load"}, headers=ADMIN).status_code == 201
    assert client.post("/orgs/Load/sources/", json={"id": "Terms"}, headers=ADMIN).status_code == 201
    domain = app.extensions["termsync"]
    store = app.extensions["termsync.store"]
    source = domain.content.find_repo(BASE)
    caller = Caller(username="admin", is_admin=True)
    stamps = []
    for number in range(concepts):
        domain.content.save_concept(caller, source, {
            "id": f"C{number}", "concept_class": "Diagnosis", "datatype": "N/A",
            "names": [{"name": f"Concept number {number}", "locale": "en",
                       "locale_preferred": True, "name_type": "FULLY_SPECIFIED"}],
            "descriptions": [{"description": f"Description of concept {number}",
                              "locale": "en"}]}, expect="new")
        if number % max(1, concepts // 20) == 0:
            stamps.append(number)
    answer = client.post(f"{BASE}versions/", json={"id": "v1", "released": True}, headers=ADMIN)
    assert answer.status_code == 201, answer.get_json()
    app.extensions["termsync.jobs"].run_until_idle()
    head = client.head(EXPORT)
    assert head.status_code == 200, head.status_code
    wanted = {f"C{n}" for n in stamps}
    since = sorted({item["updated_on"] for item in store.items.iter_content(
        ContentQuery(BASE, types=("Concept",))) if item["id"] in wanted})
    store.close()
    print(json.dumps({"since": since, "etag": head.headers["ETag"],
                      "size": int(head.headers["Content-Length"])}))


# --- the load -------------------------------------------------------------------------------

@dataclass
class Level:
    """What one concurrency level measured."""

    clients: int
    seconds: float = 0.0
    latencies: dict[str, list[float]] = field(default_factory=lambda: {k: [] for k, _ in MIX})
    outcomes: Counter[str] = field(default_factory=Counter)
    errors: list[str] = field(default_factory=list)

    @property
    def count(self) -> int:
        return sum(len(values) for values in self.latencies.values())

    def all_latencies(self) -> list[float]:
        return sorted(value for values in self.latencies.values() for value in values)


def percentile(values: list[float], share: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


def check(kind: str, answer: requests.Response, expected: dict[str, Any]) -> str | None:
    """None if the answer is well formed for its kind, else why not."""
    if answer.status_code in (429, 503):  # a well-formed refusal: error JSON and Retry-After
        body = answer.json()
        if body.get("code") == answer.status_code and answer.headers.get("Retry-After"):
            return None
        return f"{answer.status_code} without the error shape or Retry-After"
    if answer.status_code != 200:
        return f"status {answer.status_code}"
    if kind == "probe":
        if answer.headers.get("ETag") != expected["etag"]:
            return "probe: wrong ETag"
        if int(answer.headers.get("Content-Length", -1)) != expected["size"]:
            return "probe: wrong Content-Length"
    elif kind == "diff":
        body = answer.json()
        returned = len(body.get("concepts", [])) + len(body.get("mappings", []))
        if returned != int(answer.headers.get("num_returned", -1)):
            return "diff: num_returned does not match the body"
    else:
        data = answer.content
        if len(data) != expected["size"]:
            return f"download: {len(data)} bytes, expected {expected['size']}"
        digest = base64.b64encode(hashlib.sha256(data).digest()).decode()
        if answer.headers.get("Repr-Digest") != f"sha-256=:{digest}:":
            return "download: sha256 does not match Repr-Digest"
    return None


def run_level(server: str, clients: int, seconds: float, max_requests: int,
              expected: dict[str, Any], seed_value: int,
              mix: tuple[tuple[str, float], ...] = MIX) -> Level:
    level = Level(clients)
    lock = threading.Lock()
    issued = [0]
    deadline = time.monotonic() + seconds
    kinds = [kind for kind, _ in mix]
    weights = [weight for _, weight in mix]

    def client_loop(number: int) -> None:
        rng = random.Random(seed_value * 1000 + number)
        session = requests.Session()
        try:
            while time.monotonic() < deadline:
                with lock:
                    if issued[0] >= max_requests:
                        return
                    issued[0] += 1
                kind = rng.choices(kinds, weights)[0]
                if kind == "probe":
                    method, url = "HEAD", server + EXPORT
                elif kind == "diff":
                    method = "GET"
                    url = (f"{server}{BASE}v1/?includeConcepts=true&includeMappings=true&limit=100"
                           f"&updatedSince={rng.choice(expected['since'])}")
                else:
                    method, url = "GET", server + EXPORT
                started = time.perf_counter()
                try:
                    answer = session.request(method, url, timeout=30)
                    _ = answer.content  # read the whole body: latency is to the last byte
                    problem = check(kind, answer, expected)
                    outcome = str(answer.status_code)
                except requests.RequestException as exc:
                    problem, outcome = f"{kind}: {exc.__class__.__name__}", "connection error"
                elapsed = time.perf_counter() - started
                with lock:
                    level.latencies[kind].append(elapsed)
                    level.outcomes[outcome] += 1
                    if problem:
                        level.errors.append(problem)
        finally:
            session.close()

    threads = [threading.Thread(target=client_loop, args=(n,)) for n in range(clients)]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    level.seconds = time.monotonic() - started
    return level


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def start_server(database: str, export_dir: str, workers: int, threads: int,
                 port: int) -> subprocess.Popen[Any]:
    env = dict(os.environ, TERMSYNC_DATABASE_URI=f"sqlite:///{database}",
               TERMSYNC_EXPORT_DIR=export_dir, TERMSYNC_ADMIN_TOKEN=TOKEN,
               TERMSYNC_LOG_LEVEL="WARNING", TERMSYNC_BACKGROUND_WORKERS="1",
               TERMSYNC_ACCESS_LOG="false", TERMSYNC_BIND=f"127.0.0.1:{port}",
               GUNICORN_WORKERS=str(workers), GUNICORN_THREADS=str(threads),
               GUNICORN_LOG_LEVEL="warning")
    env.pop("TERMSYNC_CONFIG", None)
    server = subprocess.Popen([sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py",
                               "wsgi:app"], cwd=ROOT, env=env)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if requests.get(f"http://127.0.0.1:{port}/readyz", timeout=2).status_code == 200:
                return server
        except requests.RequestException:
            pass
        if server.poll() is not None:
            raise SystemExit(f"gunicorn exited with {server.returncode}")
        time.sleep(0.2)
    server.kill()
    raise SystemExit("gunicorn did not become ready within 60 s")


def report(levels: list[Level]) -> str:
    lines = ["| clients | requests | seconds | req/s | p50 ms | p99 ms | probe p99 | diff p99 | "
             "download p99 | errors | error rate |",
             "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for level in levels:
        every = level.all_latencies()
        def p99(kind: str, level: Level = level) -> str:
            values = level.latencies[kind]
            return f"{percentile(values, 0.99) * 1000:.1f}" if values else "-"
        lines.append(
            f"| {level.clients} | {level.count} | {level.seconds:.1f} | "
            f"{level.count / level.seconds:.0f} | {percentile(every, 0.5) * 1000:.1f} | "
            f"{percentile(every, 0.99) * 1000:.1f} | {p99('probe')} | {p99('diff')} | "
            f"{p99('download')} | {len(level.errors)} | "
            f"{len(level.errors) / max(1, level.count):.2%} |")
    return "\n".join(lines)


def saturation(levels: list[Level]) -> str:
    """Where adding clients stops adding throughput (less than +15%) and only adds latency."""
    rates = [level.count / level.seconds for level in levels]
    for previous, current, level in zip(rates, rates[1:], levels[1:], strict=False):
        if current < previous * 1.15:
            return (f"saturates by {level.clients} clients: {current:.0f} req/s vs {previous:.0f} "
                    f"before; more clients only queue (p50 "
                    f"{percentile(level.all_latencies(), 0.5) * 1000:.1f} ms)")
    return "no saturation within the levels run"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--levels", default="1,4,16,64")
    parser.add_argument("--seconds", type=float, default=8.0, help="per level (upper bound)")
    parser.add_argument("--max-requests", type=int, default=20000, help="per level (upper bound)")
    parser.add_argument("--concepts", type=int, default=2000)
    parser.add_argument("--workers", type=int, default=2, help="gunicorn processes")
    parser.add_argument("--threads", type=int, default=16, help="gunicorn threads per process")
    parser.add_argument("--mix", default="90,9,1",
                        help="percent of HEAD probes, diff pages, downloads (default 90,9,1)")
    parser.add_argument("--json", help="also write the figures to this file")
    parser.add_argument("--seed", nargs=2, metavar=("DB", "EXPORT_DIR"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.seed:
        seed(args.seed[0], args.seed[1], args.concepts)
        return

    shares = [float(part) for part in args.mix.split(",")]
    if len(shares) != 3 or sum(shares) <= 0 or min(shares) < 0:
        parser.error("--mix takes three non-negative percentages, e.g. 90,9,1")
    mix = tuple(zip(KINDS, shares, strict=True))
    work = tempfile.mkdtemp(prefix="termsync-load-")
    database, export_dir = os.path.join(work, "load.db"), os.path.join(work, "exports")
    server = None
    try:
        started = time.perf_counter()
        seeded = subprocess.run([sys.executable, __file__, "--concepts", str(args.concepts),
                                 "--seed", database, export_dir], cwd=ROOT, check=True,
                                capture_output=True, text=True)
        expected = json.loads(seeded.stdout.strip().splitlines()[-1])
        print(f"seeded {args.concepts} concepts, export {expected['size']} bytes, in "
              f"{time.perf_counter() - started:.1f} s", flush=True)
        port = free_port()
        server = start_server(database, export_dir, args.workers, args.threads, port)
        url = f"http://127.0.0.1:{port}"
        run_level(url, 2, 1.0, 200, expected, 0)  # warm up connections and caches
        levels = []
        for number, clients in enumerate(int(c) for c in args.levels.split(",")):
            level = run_level(url, clients, args.seconds, args.max_requests, expected, number + 1,
                              mix)
            levels.append(level)
            print(f"{clients:>3} clients: {level.count / level.seconds:7.0f} req/s  "
                  f"p50 {percentile(level.all_latencies(), 0.5) * 1000:6.1f} ms  "
                  f"p99 {percentile(level.all_latencies(), 0.99) * 1000:7.1f} ms  "
                  f"errors {len(level.errors)}  {dict(level.outcomes)}", flush=True)
            for problem, count in Counter(level.errors).most_common(5):
                print(f"      {count} x {problem}")
        print()
        print(f"gunicorn: {args.workers} processes x {args.threads} threads (gthread), SQLite; "
              f"{os.cpu_count()} CPUs shared with the load generator; {args.concepts} concepts; "
              f"mix {shares[0]:g}% HEAD export / {shares[1]:g}% diff page (limit 100) / "
              f"{shares[2]:g}% export download")
        print(report(levels))
        print(saturation(levels))
        if args.json:
            with open(args.json, "w") as handle:
                json.dump([{"clients": level.clients, "requests": level.count,
                            "seconds": level.seconds, "outcomes": dict(level.outcomes),
                            "errors": len(level.errors),
                            "p50": percentile(level.all_latencies(), 0.5),
                            "p99": percentile(level.all_latencies(), 0.99),
                            "p99_by_kind": {kind: percentile(values, 0.99) for kind, values
                                            in level.latencies.items()}} for level in levels],
                          handle, indent=1)
        if any(level.errors for level in levels):
            sys.exit(1)
    finally:
        if server is not None:
            server.send_signal(signal.SIGTERM)
            try:
                server.wait(30)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
