"""Benchmark: monitoring's HEAD probes of an export, and `GET /healthz`, through the documented
deployment (nginx with deploy/nginx/termsync.conf in front of gunicorn) and through gunicorn
alone, in the same run.

    .venv/bin/python bench/probes_stack.py                  # 1 and 16 clients, 8 s, 2 turns
    .venv/bin/python bench/probes_stack.py --clients 16 --seconds 5 --turns 3

bench/probes.py's database (a released version of 1,000 concepts, its export built) and its
ApacheBench runs (`ab -k`, keep-alive, `-i` for HEAD, after a warm-up burst). Both deployments
are tests/stack.py's, as production binds them (gunicorn.conf.py on a fixed loopback port: a
socket per process), 2 processes x the configured 4 threads, no job worker, each on a copy of
the database; they run side by side and are measured in turns, so that the machine's other work
weighs on both alike. Reported per turn and number of clients: requests/s, p50 and p99 of the
HEAD probe and of `/healthz`, and the stack's figures as ratios to gunicorn alone's.
"""

from __future__ import annotations

import argparse
import importlib
import shutil
import sys
import tempfile
from contextlib import ExitStack
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.stack import Stack  # noqa: E402

probes = importlib.import_module("bench.probes")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", default="1,16")
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--turns", type=int, default=2)
    args = parser.parse_args()
    if shutil.which("ab") is None:
        raise SystemExit("bench/probes_stack.py needs ApacheBench: apt-get install apache2-utils")
    work = Path(tempfile.mkdtemp(prefix="termsync-bench-probes-stack-"))
    try:
        env = probes.seed(str(work))
        urls: dict[str, str] = {}
        with ExitStack() as running:
            for proxy, name in ((False, "gunicorn alone"), (True, "nginx → gunicorn")):
                root = work / ("stack" if proxy else "bare")
                root.mkdir()
                shutil.copyfile(work / "bench.db", root / "copy.db")
                stack = running.enter_context(Stack(
                    root, proxy=proxy, worker=False, fixed_port=True, settings={
                        "TERMSYNC_DATABASE_URI": f"sqlite:///{root / 'copy.db'}",
                        "TERMSYNC_EXPORT_DIR": env["TERMSYNC_EXPORT_DIR"],
                        "TERMSYNC_ADMIN_TOKEN": env["TERMSYNC_ADMIN_TOKEN"],
                        "TERMSYNC_LOG_LEVEL": "ERROR"}))
                urls[name] = stack.url
                probes.ab(stack.url + probes.EXPORT, 16, 2.0, head=True)  # warm-up
            for turn in range(1, args.turns + 1):
                for clients in (int(text) for text in args.clients.split(",")):
                    figures = {}
                    for name, url in urls.items():
                        probe = probes.ab(url + probes.EXPORT, clients, args.seconds, head=True)
                        health = probes.ab(url + "/healthz", clients, args.seconds, head=False)
                        figures[name] = probe
                        print(f"turn {turn}, {clients:>2} clients, {name:17} HEAD export "
                              f"{probe['requests_per_second']:7.0f}/s p50 {probe['p50_ms']:.0f} "
                              f"ms p99 {probe['p99_ms']:.0f} ms (failed {probe['failed']:.0f}); "
                              f"GET /healthz {health['requests_per_second']:7.0f}/s "
                              f"p99 {health['p99_ms']:.0f} ms", flush=True)
                    bare, stack_figures = figures["gunicorn alone"], figures["nginx → gunicorn"]
                    print(f"turn {turn}, {clients:>2} clients: HEAD through nginx / alone: "
                          f"req/s {stack_figures['requests_per_second'] / bare['requests_per_second']:.2f}, "
                          f"p99 {stack_figures['p99_ms']:.0f} / {bare['p99_ms']:.0f} ms", flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
