"""Quota periods in UTC: where a period starts and when it resets."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

LIFETIME_START = datetime(1970, 1, 1, tzinfo=timezone.utc)


def period_start(period: str, now: datetime) -> datetime:
    """The start of the period containing ``now`` (UTC): minute, hour, day, calendar month,
    or the epoch for ``lifetime``."""
    now = now.astimezone(timezone.utc)
    if period == "minute":
        return now.replace(second=0, microsecond=0)
    if period == "hour":
        return now.replace(minute=0, second=0, microsecond=0)
    if period == "day":
        return now.replace(hour=0, minute=0, second=0, microsecond=0)
    if period == "month":
        return now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    if period == "lifetime":
        return LIFETIME_START
    raise ValueError(f"unknown period {period!r}")


def period_end(period: str, now: datetime) -> datetime | None:
    """When the period containing ``now`` resets (``None`` for lifetime)."""
    start = period_start(period, now)
    if period == "minute":
        return start + timedelta(minutes=1)
    if period == "hour":
        return start + timedelta(hours=1)
    if period == "day":
        return start + timedelta(days=1)
    if period == "month":
        return start.replace(year=start.year + 1, month=1) if start.month == 12 else start.replace(month=start.month + 1)
    return None
