"""Hostile zip imports: time and peak memory to answer a decompression bomb and a zip holding one
huge item, for this code and (optionally) another tree of the code measured in the same run.

Each case runs in a child process of its own (so peak RSS figures do not mix), which builds an app
on a new SQLite file and POSTs the zip to /importers/bulk-import/ through the app's test client:
the server-side work of the request, without a network. Reported: the status, wall time, and the
child's peak RSS above what it held once the app was built. The zips are built in well under a
second (tests/security/hostile_zips.py): a 1 GiB bomb is about 1 MB, a 200 MB item about 200 KB.

    .venv/bin/python bench/inputs.py
    mkdir /tmp/termsync-main && git archive main | tar -x -C /tmp/termsync-main
    .venv/bin/python bench/inputs.py --baseline /tmp/termsync-main   # before/after, as ratios
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
MB = 1 << 20
# 32 characters: what a caller-chosen token needs (docs/security.md, Accounts).
ADMIN_TOKEN = "bench-inputs-admin-token-0123456789"
# name: (what it is, megabytes it expands to by default)
CASES = {"bomb": ("a decompression bomb: spaces in an empty export, past the 1 GiB limit", 1024),
         "bomb-lying": ("the same bomb, its directory claiming 100 bytes", 1024),
         "bomb-within": ("a bomb within the limit, spaces between two fields", 1000),
         "bomb-items": ("a bomb within the limit, of 64-byte concepts", 1000),
         "item": ("one concept whose name is 200 MB of one letter", 200),
         "item-dense": ("one concept whose name is 200 MB of random letters", 200)}


def build_zip(case: str, megabytes: int) -> bytes:
    sys.path.insert(0, str(ROOT))
    from tests.security.hostile_zips import deflate_bomb, huge_item_zip, item_bomb

    # With true checksums: what a real attacker sends, and code without bounds reads whole.
    if case.startswith("item"):
        return huge_item_zip(megabytes * MB, dense=case == "item-dense", with_crc=True)
    if case == "bomb-items":
        return item_bomb(megabytes * MB, with_crc=True)
    return deflate_bomb(megabytes * MB, 100 if case == "bomb-lying" else None, with_crc=True)


def child(case: str, code: str, zip_path: str) -> None:
    """Run one case against the code in `code`; print a JSON line of figures."""
    sys.path.insert(0, code)
    from app import create_app

    work = tempfile.mkdtemp(prefix="termsync-bench-inputs-")
    app = create_app({"DATABASE_URI": f"sqlite:///{work}/termsync.db", "ADMIN_TOKEN": ADMIN_TOKEN,
                      "TESTING": True, "LOAD_DEMO": False, "LOG_LEVEL": "WARNING",
                      "ACCESS_LOG": False, "EXPORT_DIR": f"{work}/exports",
                      "IMPORT_DIR": f"{work}/imports"})
    client = app.test_client()
    body = Path(zip_path).read_bytes()
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    started = time.perf_counter()
    answer = client.post("/importers/bulk-import/", data=body, content_type="application/zip",
                         headers={"Authorization": f"Token {ADMIN_TOKEN}"})
    seconds = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    message = (answer.get_json(silent=True) or {}).get("message", "")
    print(json.dumps({"status": answer.status_code, "seconds": round(seconds, 2),
                      "peak_rss_mb": round(peak / 1024, 1),
                      "added_rss_mb": round((peak - before) / 1024, 1), "message": message[:120]}))


def run(case: str, code: str, zip_path: str, timeout: float) -> dict[str, Any]:
    """One case in a child process; its figures, or how it failed to finish."""
    started = time.perf_counter()
    try:
        done = subprocess.run([sys.executable, __file__, "--child", case, "--code", code,
                               "--zip", zip_path], capture_output=True, text=True,
                              timeout=timeout, cwd=code, check=False)
    except subprocess.TimeoutExpired:
        return {"status": None, "seconds": None, "note": f"still running after {timeout:.0f} s "
                f"(killed; {time.perf_counter() - started:.0f} s)"}
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if not lines:
        return {"status": None, "seconds": None, "note": done.stderr[-300:]}
    figures: dict[str, Any] = json.loads(lines[-1])
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--baseline", help="another tree of the code (e.g. a worktree of main)")
    parser.add_argument("--case", action="append", choices=sorted(CASES),
                        help="only these cases (default: all)")
    parser.add_argument("--megabytes", type=int, help="what each case expands to")
    parser.add_argument("--timeout", type=float, default=900.0, help="seconds a case may take")
    parser.add_argument("--child")
    parser.add_argument("--code")
    parser.add_argument("--zip")
    args = parser.parse_args()
    if args.child:
        child(args.child, args.code, args.zip)
        return
    trees = [("this", str(ROOT))] + ([("baseline", args.baseline)] if args.baseline else [])
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    for case in args.case or list(CASES):
        description, size = CASES[case]
        size = args.megabytes or size
        with tempfile.NamedTemporaryFile(suffix=".zip") as handle:
            handle.write(build_zip(case, size))
            handle.flush()
            zipped = handle.tell()
            print(f"\n{case}: {description}; {size} MB expanded, {zipped / 1024:.0f} KB zipped")
            results = {}
            for name, code in trees:
                results[name] = run(case, code, handle.name, args.timeout)
                figures = results[name]
                print(f"  {name:8} status {figures.get('status')}  {figures.get('seconds')} s  "
                      f"peak RSS {figures.get('peak_rss_mb')} MB (+{figures.get('added_rss_mb')} "
                      f"for the request)  {figures.get('message') or figures.get('note', '')}")
            if "baseline" in results and results["this"].get("seconds") is not None and \
                    results["baseline"].get("seconds") is not None:
                ratio = results["baseline"]["seconds"] / max(results["this"]["seconds"], 0.01)
                print(f"  baseline / this: {ratio:.1f} times the time")


if __name__ == "__main__":
    main()
