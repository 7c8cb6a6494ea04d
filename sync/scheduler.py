"""Runs every subscription on its schedule (APScheduler) until SIGTERM/SIGINT."""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from types import FrameType
from typing import Any

from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger

from .config import Subscription, SyncConfig

logger = logging.getLogger(__name__)


def job_id(subscription: Subscription) -> str:
    """The scheduler job id of a subscription."""
    return f"termsync-sync:{subscription.name}"


def trigger_for(subscription: Subscription) -> CronTrigger | IntervalTrigger:
    """Cron (UTC) when configured, else the interval."""
    if subscription.cron:
        return CronTrigger.from_crontab(subscription.cron, timezone=UTC)
    return IntervalTrigger(seconds=subscription.interval or 3600.0, timezone=UTC)


def build_scheduler(config: SyncConfig, run: Callable[[Subscription], Any],
                    scheduler: BackgroundScheduler | None = None,
                    start_now: bool = True) -> BackgroundScheduler:
    """One job per subscription: explicit id, max_instances=1, coalesce, misfire grace."""
    scheduler = scheduler or BackgroundScheduler(timezone=UTC)
    for subscription in config.subscriptions:
        scheduler.add_job(
            run, trigger_for(subscription), args=[subscription], id=job_id(subscription),
            name=f"sync {subscription.name}", max_instances=1, coalesce=True,
            misfire_grace_time=subscription.misfire_grace_time, replace_existing=True,
            # the first pass runs at start-up, not one interval later
            next_run_time=datetime.now(UTC) if start_now else None)
    return scheduler


def run_until_stopped(scheduler: BackgroundScheduler, stop_event: threading.Event) -> None:
    """Start the scheduler; on SIGTERM/SIGINT let running passes stop at a page boundary."""
    def request_stop(signum: int, frame: FrameType | None) -> None:
        """The signal handler: ask running passes to stop at their next safe point."""
        logger.info("signal %s: stopping after the current page", signal.Signals(signum).name)
        stop_event.set()

    previous = {sig: signal.signal(sig, request_stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        scheduler.start()
        logger.info("scheduler running %d subscription job(s)", len(scheduler.get_jobs()))
        stop_event.wait()
    finally:
        if scheduler.running:
            scheduler.shutdown(wait=True)
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    logger.info("scheduler stopped")
