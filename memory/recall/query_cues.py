"""Cues read off the query text itself, for recall to match against memories' metadata:

- **time windows**: "on 31 July, 2023", "July 31, 2023", "2023-07-31", "in August 2023", "in June", "yesterday",
  "last week", "3 days ago" … → UNIX-second ranges. A memory whose time (event time, else creation time) falls in
  a window, widened by a little slack, matches: a question about a date is most likely answered by what was said
  around it. Japanese and Chinese periods (昨日, 先週, 3日前, 去年, 5月に, 昨天, 上周, 三天前) are read by
  :mod:`memory.recall.query_cues_cjk`.
- **speakers**: a memory's speaker (``metadata["speaker"]``, set for conversation turns) named in the query as a
  whole word ("What did Joanna say about …" → Joanna's turns).

Pure functions of the text and the recall time: no I/O, a few microseconds per query.
"""

from __future__ import annotations

import calendar
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from memory.recall import dates
from memory.recall.lexical import has_cjk
from memory.recall.query_cues_cjk import cjk_periods

DAY_S = 86_400.0
SLACK_BEFORE_S = 7 * DAY_S
"""A memory up to a week before the window still matches (plans made before the day)."""
SLACK_AFTER_S = 14 * DAY_S
"""… and up to two weeks after it (the day told about later: "last week I …")."""

_MONTHS: dict[str, int] = {}
for _number in range(1, 13):
    _MONTHS[calendar.month_name[_number].lower()] = _number
    _MONTHS[calendar.month_abbr[_number].lower()] = _number
_MONTHS["sept"] = 9
_MONTH = "(" + "|".join(sorted(_MONTHS, key=len, reverse=True)) + r")\.?"
_DAY = r"(\d{1,2})(?:st|nd|rd|th)?"
_YEAR = r"((?:19|20)\d{2})"

_ISO = re.compile(rf"\b{_YEAR}-(\d{{1,2}})-(\d{{1,2}})\b")
_DAY_MONTH = re.compile(rf"\b{_DAY}\s+(?:of\s+)?{_MONTH}(?:,?\s+{_YEAR})?\b", re.IGNORECASE)
_MONTH_DAY = re.compile(rf"\b{_MONTH}\s+{_DAY}(?:,?\s+{_YEAR})?\b", re.IGNORECASE)
_MONTH_YEAR = re.compile(rf"\b{_MONTH},?\s+(?:of\s+)?{_YEAR}\b", re.IGNORECASE)
_IN_MONTH = re.compile(rf"\b(?:in|during|since|last|this)\s+{_MONTH}\b", re.IGNORECASE)
_YEAR_ANYWHERE = re.compile(r"(?<!\d)(?:19|20)\d{2}(?!\d)")
_IN_YEAR = re.compile(rf"\b(?:in|during|of)\s+{_YEAR}\b", re.IGNORECASE)
_AGO = re.compile(r"\b(\d{1,3}|a|an|one|two|three|four|five|six)\s+(day|week|month|year)s?\s+ago\b", re.IGNORECASE)
_RELATIVE = re.compile(
    r"\b(today|tonight|yesterday|the day before yesterday|(?:last|this|past)\s+(?:week|weekend|month|year))\b",
    re.IGNORECASE,
)
_WORD_NUMBERS = {"a": 1, "an": 1, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6}
_WORD = re.compile(r"[^\W_]+", re.UNICODE)
_AMBIGUOUS = frozenset({"may", "march", "mar", "jan", "jun", "aug", "sept", "dec"})
"""Month words that are also ordinary words: they count only capitalised ("in May", not "I may")."""


def _month(word: str) -> int | None:
    if word in _AMBIGUOUS:
        return None
    return _MONTHS.get(word.lower())


@dataclass(frozen=True, slots=True)
class TimeWindow:
    start: float
    end: float
    """UNIX seconds, end exclusive."""

    def matches(self, at: float) -> bool:
        return self.start - SLACK_BEFORE_S <= at < self.end + SLACK_AFTER_S


def time_windows(query: str, now: float) -> list[TimeWindow]:
    """The periods the query names, explicit dates first. A date without a year takes the year the query names
    elsewhere ("between August 11 and August 15 2023"), else it is the latest such date not after ``now``. Empty
    when the query names none."""
    today = datetime.fromtimestamp(now, tz=timezone.utc).date()
    year_named = _YEAR_ANYWHERE.search(query)

    def year_of(month: int, day: int = 1) -> int:
        """The year of a date the query gives without one."""
        if year_named:
            return int(year_named[0])
        return today.year if (month, day) <= (today.month, today.day) else today.year - 1

    found: list[TimeWindow] = []
    taken: list[tuple[int, int]] = []

    def add(match: re.Match[str] | tuple[int, int], start: datetime | None, end: datetime | None) -> None:
        begin, finish = match if isinstance(match, tuple) else match.span()
        if start is None or end is None or any(a < finish and begin < b for a, b in taken):
            return
        taken.append((begin, finish))
        found.append(TimeWindow(start.timestamp(), end.timestamp()))

    for match in _ISO.finditer(query):
        day = dates.day(int(match[1]), int(match[2]), int(match[3]))
        add(match, day, day and day + timedelta(days=1))
    for pattern, day_group, month_group in ((_DAY_MONTH, 1, 2), (_MONTH_DAY, 2, 1)):
        for match in pattern.finditer(query):
            month = _month(match[month_group])
            if month is None:
                continue
            day_number = int(match[day_group])
            day = dates.day(int(match[3]) if match[3] else year_of(month, day_number), month, day_number)
            add(match, day, day and day + timedelta(days=1))
    for match in _MONTH_YEAR.finditer(query):
        month, year = _month(match[1]), int(match[2])
        if month is None:
            continue
        add(match, dates.day(year, month, 1), dates.month_after(year, month))
    for match in _IN_MONTH.finditer(query):
        month = _month(match[1])
        if month is None:
            continue
        year = year_of(month)
        add(match, dates.day(year, month, 1), dates.month_after(year, month))
    for match in _IN_YEAR.finditer(query):
        year = int(match[1])
        add(match, dates.day(year, 1, 1), dates.day(year + 1, 1, 1))
    midnight = datetime(today.year, today.month, today.day, tzinfo=timezone.utc)
    for match in _AGO.finditer(query):
        count = _WORD_NUMBERS.get(match[1].lower()) or int(match[1])
        days = count * {"day": 1, "week": 7, "month": 30, "year": 365}[match[2].lower()]
        span = 1 if match[2].lower() == "day" else 7
        add(match, midnight - timedelta(days=days + span // 2), midnight - timedelta(days=days - span // 2 - 1))
    for match in _RELATIVE.finditer(query):
        phrase = " ".join(match[1].lower().split())
        if phrase in ("today", "tonight"):
            add(match, midnight, midnight + timedelta(days=1))
        elif phrase == "yesterday":
            add(match, midnight - timedelta(days=1), midnight)
        elif phrase == "the day before yesterday":
            add(match, midnight - timedelta(days=2), midnight - timedelta(days=1))
        else:
            unit = phrase.split()[1]
            days = {"week": 7, "weekend": 7, "month": 31, "year": 365}[unit]
            recent = phrase.startswith(("this", "past"))
            add(match, midnight - timedelta(days=days * (1 if recent else 2)), midnight + timedelta(days=1))
    if has_cjk(query):
        for span, start, end in cjk_periods(query, today, int(year_named[0]) if year_named else None):
            add(span, start, end)
    return found


def named_speakers(query: str, speakers: Iterable[object]) -> set[str]:
    """Those of ``speakers`` the query names as whole words (case-insensitive; "Joanna's" names Joanna). Anything
    not a string (a memory without a speaker) is passed over."""
    words = {word.casefold() for word in _WORD.findall(query)}
    named: set[str] = set()
    for speaker in speakers:
        if not isinstance(speaker, str):
            continue
        parts = [part.casefold() for part in _WORD.findall(speaker)]
        if parts and all(part in words for part in parts):
            named.add(speaker)
    return named
