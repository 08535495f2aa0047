"""Periods a Japanese or Chinese query names, for :func:`memory.recall.query_cues.time_windows`: dates
(2023年7月31日, 7月31日, 7月31号, 2023年5月, 5月に, 五月, 2023年), relative days and periods (昨日 / 昨天, 一昨日 /
前天, 今日 / 今天, 先週 / 上周 / 上个星期, 今週 / 这周 / 本周, 先月 / 上个月, 今月 / 这个月, 去年, 今年) and counts back
(3日前, 三天前, 2週間前, 两周前, 3ヶ月前, 三个月前, 1年前). Numbers may be digits (full-width too) or kanji / hanzi up to
99. Each period reads as its English counterpart does ("last week" here is "last week" there).

Pure functions of the text and the day the query is asked: no I/O.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import date, datetime, timedelta, timezone

from memory.recall import dates

Period = tuple[tuple[int, int], datetime | None, datetime | None]
"""(the span of the text that names it, start, end exclusive); None where the date does not exist."""

_DIGITS = "0-9０-９"
_KANJI = "〇零一二两兩三四五六七八九十"
_NUMBER = rf"([{_DIGITS}]{{1,4}}|[{_KANJI}]{{1,3}})"
_KANJI_VALUES = {"〇": 0, "零": 0, "一": 1, "二": 2, "两": 2, "兩": 2, "三": 3, "四": 4, "五": 5, "六": 6, "七": 7,
                 "八": 8, "九": 9}  # fmt: skip

_FULL_DATE = re.compile(rf"{_NUMBER}年{_NUMBER}月{_NUMBER}[日号號]")
_MONTH_DAY = re.compile(rf"(?<![年{_DIGITS}{_KANJI}]){_NUMBER}月{_NUMBER}[日号號]")
_YEAR_MONTH = re.compile(rf"{_NUMBER}年{_NUMBER}月(?![{_DIGITS}{_KANJI}])")
_MONTH = re.compile(rf"(?<![年{_DIGITS}{_KANJI}]){_NUMBER}月(?![{_DIGITS}{_KANJI}日号號])(?!前)")
_YEAR = re.compile(rf"(?<![{_DIGITS}])((?:19|20)[0-9]{{2}}|(?:１９|２０)[０-９]{{2}})年(?![{_DIGITS}{_KANJI}]+月)")
_AGO = re.compile(
    rf"{_NUMBER}\s*(?P<unit>日|天|週間|周|个?星期|個?星期|ヶ月|か月|カ月|ケ月|个月|個月|年)(?:前|以前)"
)
_RELATIVE: tuple[tuple[re.Pattern[str], str], ...] = tuple(
    (re.compile(pattern), name)
    for pattern, name in (
        (r"一昨日|おととい|前天", "day before yesterday"),
        (r"昨日|きのう|昨天|昨晚|昨夜", "yesterday"),
        (r"今日|きょう|今天|今晚|今夜", "today"),
        (r"先週|上周|上个?星期|上個?星期|上个?礼拜|上禮拜", "last week"),
        (r"今週|这周|這周|本周|这个?星期|這個?星期|这个?礼拜", "this week"),
        (r"先月|上个?月|上個?月", "last month"),
        (r"今月|这个月|這個月|本月", "this month"),
        (r"去年|昨年", "last year"),
        (r"今年", "this year"),
    )
)


def cjk_periods(query: str, today: date, year_named: int | None) -> Iterator[Period]:
    """The periods the query names, explicit dates first. A date without a year takes ``year_named`` (a year the
    query names elsewhere), else the latest such date not after ``today``."""

    def year_of(month: int, day: int = 1) -> int:
        if year_named:
            return year_named
        return today.year if (month, day) <= (today.month, today.day) else today.year - 1

    for match in _FULL_DATE.finditer(query):
        day = dates.day(_number(match[1]), _number(match[2]), _number(match[3]))
        yield match.span(), day, day and day + timedelta(days=1)
    for match in _MONTH_DAY.finditer(query):
        month, day_number = _number(match[1]), _number(match[2])
        day = dates.day(year_of(month, day_number), month, day_number)
        yield match.span(), day, day and day + timedelta(days=1)
    for match in _YEAR_MONTH.finditer(query):
        year, month = _number(match[1]), _number(match[2])
        yield match.span(), dates.day(year, month, 1), dates.month_after(year, month)
    for match in _MONTH.finditer(query):
        month = _number(match[1])
        year = year_of(month)
        yield match.span(), dates.day(year, month, 1), dates.month_after(year, month)
    for match in _YEAR.finditer(query):
        year = _number(match[1])
        yield match.span(), dates.day(year, 1, 1), dates.day(year + 1, 1, 1)
    midnight = datetime(today.year, today.month, today.day, tzinfo=timezone.utc)
    for match in _AGO.finditer(query):
        unit = match["unit"]
        length = 1 if unit in ("日", "天") else 7 if unit in ("週間", "周") or "星期" in unit else 30 if "月" in unit else 365
        days = _number(match[1]) * length
        span = 1 if length == 1 else 7
        yield match.span(), midnight - timedelta(days=days + span // 2), midnight - timedelta(days=days - span // 2 - 1)
    for pattern, name in _RELATIVE:
        for match in pattern.finditer(query):
            yield match.span(), *_relative(name, midnight)


def _relative(name: str, midnight: datetime) -> tuple[datetime, datetime]:
    if name == "today":
        return midnight, midnight + timedelta(days=1)
    if name == "yesterday":
        return midnight - timedelta(days=1), midnight
    if name == "day before yesterday":
        return midnight - timedelta(days=2), midnight - timedelta(days=1)
    when, unit = name.split()
    days = {"week": 7, "month": 31, "year": 365}[unit]
    return midnight - timedelta(days=days * (1 if when == "this" else 2)), midnight + timedelta(days=1)


def _number(text: str) -> int:
    """Digits (ASCII or full-width) or kanji / hanzi numerals up to 99 (十, 十二, 二十, 二十三)."""
    text = text.translate(_FULL_WIDTH)
    if text.isdigit():
        return int(text)
    if "十" in text:
        tens, _, ones = text.partition("十")
        return _KANJI_VALUES.get(tens, 1) * 10 + _KANJI_VALUES.get(ones, 0)
    value = 0
    for char in text:
        value = value * 10 + _KANJI_VALUES.get(char, 0)
    return value


_FULL_WIDTH = str.maketrans("０１２３４５６７８９", "0123456789")
