"""Timestamps as fixed-width ISO 8601 UTC strings, so that string order is time order."""

from __future__ import annotations

from datetime import UTC, datetime

FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"


def format_time(moment: datetime) -> str:
    """Render a datetime as 'YYYY-MM-DDTHH:MM:SS.ffffffZ' in UTC (zone-less means UTC)."""
    if moment.tzinfo is UTC:  # what now() gives: '+00:00' becomes 'Z'
        return moment.isoformat(timespec="microseconds")[:-6] + "Z"
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC).replace(tzinfo=None)
    return moment.isoformat(timespec="microseconds") + "Z"  # FORMAT, but several times faster


def now() -> datetime:
    """The current time (UTC); every stamp the domain writes comes from here (tests may replace it)."""
    return datetime.now(UTC)


def now_iso() -> str:
    """The current time in the stored format."""
    return format_time(now())


def to_datetime(stamp: str) -> datetime:
    """A stored time stamp as an aware UTC datetime."""
    return datetime.fromisoformat(stamp)  # the stored FORMAT, read several times faster


def parse_time(text: str) -> str:
    """Parse any ISO 8601 time (zone-less = UTC) into the stored format; ValueError if it is not one."""
    value = text.strip()
    if not value:
        raise ValueError("empty time")
    if value.endswith(("z", "Z")):
        value = value[:-1] + "+00:00"
    if " " in value and "T" not in value:
        value = value.replace(" ", "T", 1)
    moment = datetime.fromisoformat(value)
    return format_time(moment)
