"""The floor under termsync's MongoDB figures: what a MongoDB-wire server costs per operation,
with nothing of termsync's in between (raw pymongo), at two collection sizes.

termsync's MongoDB backend makes these calls: a lookup by `_id` (heads, documents), a lookup by
an indexed field (an item at a version, a diff page's bound), an insert, an update by `_id`
(supersede, heartbeats). On a real MongoDB each is an index probe whose cost does not grow with
the collection; the ratio of the larger size to the smaller says whether it does on the server
measured. Against FerretDB (`--database-uri ferretdb`, the default: one started for the run) it
tells what is FerretDB's cost in termsync's figures.

    .venv/bin/python bench/wire_floor.py --sizes 1000,4000
    .venv/bin/python bench/wire_floor.py --database-uri mongodb://localhost:27017
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

ROUNDS = 100


def median_ms(operation: Callable[[int], Any], rounds: int = ROUNDS) -> float:
    """The median of `rounds` timed calls of operation(round), in milliseconds."""
    times = []
    for number in range(rounds):
        started = time.perf_counter()
        operation(number)
        times.append((time.perf_counter() - started) * 1000)
    return round(statistics.median(times), 2)


def measure(uri: str, size: int) -> dict[str, Any]:
    """Per-operation medians on a collection of `size` item-shaped documents."""
    import pymongo

    client: Any = pymongo.MongoClient(uri)
    database = client[f"floor_{uuid.uuid4().hex[:8]}"]
    items = database.items
    items.create_index([("source", 1), ("type", 1), ("id", 1), ("sup", 1)])
    items.insert_many([{"_id": f"/s/concepts/{n}/1/", "source": "/s/", "type": "Concept",
                        "id": str(n), "sup": 1, "data": {"names": [{"name": f"Concept {n}"}]}}
                       for n in range(size)])
    step = max(1, size // ROUNDS)
    figures = {
        "size": size,
        "find_by_id_ms": median_ms(lambda n: items.find_one({"_id": f"/s/concepts/{n * step}/1/"})),
        "find_by_index_ms": median_ms(lambda n: items.find_one(
            {"source": "/s/", "type": "Concept", "id": str(n * step), "sup": 1})),
        "insert_ms": median_ms(lambda n: items.insert_one(
            {"_id": f"/s/concepts/new{n}/1/", "source": "/s/", "type": "Concept",
             "id": f"new{n}", "sup": 1})),
        "update_by_id_ms": median_ms(lambda n: items.update_one(
            {"_id": f"/s/concepts/{n * step}/1/"}, {"$set": {"sup": 2}})),
    }
    client.drop_database(database.name)
    client.close()
    return figures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000,4000", help="two collection sizes")
    parser.add_argument("--database-uri", default="ferretdb",
                        help="mongodb://... or 'ferretdb' (one started for the run)")
    args = parser.parse_args()
    from tests.ferretdb import resolve

    uri = resolve(args.database_uri)
    runs = [measure(uri, int(size)) for size in args.sizes.split(",")]
    for run in runs:
        print(json.dumps(run))
    first, last = runs[0], runs[-1]
    print(json.dumps({f"{key}_ratio_{last['size']}_to_{first['size']}":
                      round(last[key] / first[key], 1) for key in first if key.endswith("_ms")}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
