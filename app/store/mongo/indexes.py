"""Index creation that keeps working on MongoDB-wire servers lacking some index options.

A real MongoDB gets every index in its native form (a TTL index, a partial index). FerretDB 1.24
answers NotImplemented to `expireAfterSeconds` and `partialFilterExpression`; there the same keys
get a plain index instead, which serves the same queries. Correctness never rests on these
options: what a TTL index would remove, maintenance purges (`purge` of heartbeats and rate
counters), and every query that a partial index serves names the partial filter itself.
"""

from __future__ import annotations

import logging
from typing import Any

from pymongo.errors import OperationFailure

logger = logging.getLogger(__name__)

# Options a server may lack, and which a plain index over the same keys stands in for.
OPTIONAL = ("expireAfterSeconds", "partialFilterExpression")
NOT_IMPLEMENTED = 238  # MongoDB's error code NotImplemented, as FerretDB sends it
_told: set[str] = set()  # what was logged already: once per process, not per database


def create_index(collection: Any, keys: list[tuple[str, int]], **options: Any) -> str:
    """Create an index; where the server lacks one of its OPTIONAL options, a plain index."""
    try:
        name: str = collection.create_index(keys, **options)
        return name
    except OperationFailure as error:
        lacking = [option for option in OPTIONAL if option in options]
        if error.code != NOT_IMPLEMENTED or not lacking:
            raise
        told = f"{collection.name}: {', '.join(lacking)}"
        if told not in _told:
            _told.add(told)
            logger.info("%s: the server lacks %s (%s); a plain index stands in",
                        collection.name, ", ".join(lacking), error.details.get("errmsg")
                        if error.details else error)
        plain = {key: value for key, value in options.items() if key not in OPTIONAL}
        name = collection.create_index(keys, **plain)
        return name
