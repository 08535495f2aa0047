"""Calendar days as UTC datetimes, for the periods a query names (:mod:`memory.recall.query_cues`)."""

from __future__ import annotations

from datetime import datetime, timezone


def day(year: int, month: int, day_of_month: int) -> datetime | None:
    """Midnight UTC of that day; None where the date does not exist (31 June)."""
    try:
        return datetime(year, month, day_of_month, tzinfo=timezone.utc)
    except ValueError:
        return None


def month_after(year: int, month: int) -> datetime | None:
    """Midnight UTC of the first day of the month after; None for a month outside 1..12."""
    if not 1 <= month <= 12:
        return None
    return day(year + (month == 12), month % 12 + 1, 1)
