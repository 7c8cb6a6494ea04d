"""The demo content: OCL's own DemoOrg/DemoSource, loaded and released as v1.0."""

from __future__ import annotations

import logging
from collections import Counter
from importlib import resources

from .domain import Domain
from .domain.loader import Loader, numbered_lines

logger = logging.getLogger(__name__)

DEMO_USER = "demo"


def load_demo(domain: Domain) -> Counter[str]:
    """Load sample_ocldev.jsonl (idempotent: a second load reports everything unchanged)."""
    if not domain.accounts.has_user(DEMO_USER):
        domain.accounts.create_user(DEMO_USER, name="Demo curator")
    caller = domain.accounts.caller_for(DEMO_USER)
    loader = Loader(domain.content, caller)
    counts: Counter[str] = Counter()
    text = resources.files("app").joinpath("data/sample_ocldev.jsonl").read_text("utf-8")
    for result in loader.load(numbered_lines(text.splitlines())):
        counts[result.action] += 1
        if result.action == "failed":
            logger.warning("demo line %d: %s", result.line, "; ".join(result.errors))
    logger.info("demo content loaded: %s", dict(counts))
    return counts
