"""Simple entities found without a model: quotes, dates, times, quantities, @handles, #tags, capitalised names,
and katakana / kanji / hangul runs (Chinese split at function characters, Korean particles dropped).
Used by the deterministic extractor; linear time on any input."""

from __future__ import annotations

import re
from collections import Counter

from memory.models import normalise_entity

MAX_ENTITIES = 32
"""At most this many entities per text (the first ones, in reading order)."""
MAX_ENTITY_CHARS = 64
"""Longer candidates (a run of katakana filling a line, say) are not names."""

_URL_OR_EMAIL = re.compile(r"\b(?:https?://|www\.)\S+|(?<![\w.+-])[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
_QUOTE = re.compile(
    r'"([^"\n]{1,60})"|“([^”\n]{1,60})”|‘([^\n]{1,60}?)’(?!\w)|(?<!\w)\'([^\'\n]{1,60})\'(?!\w)'
    r"|「([^」\n]{1,60})」|『([^』\n]{1,60})』"
)
_MONTH = (
    r"(?:Jan(?:uary)?|Feb(?:ruary)?|Mar(?:ch)?|Apr(?:il)?|May|June?|July?|Aug(?:ust)?|Sep(?:t(?:ember)?)?"
    r"|Oct(?:ober)?|Nov(?:ember)?|Dec(?:ember)?)"
)
_DAY = r"\d{1,2}(?:st|nd|rd|th)?"
_DATE = re.compile(
    rf"\b\d{{4}}-\d{{1,2}}-\d{{1,2}}\b|\b\d{{1,2}}/\d{{1,2}}/\d{{2,4}}\b"
    rf"|\b{_MONTH}\.?\s+{_DAY}(?:,?\s+\d{{4}})?\b|\b{_DAY}\s+(?:of\s+)?{_MONTH}\b(?:,?\s+\d{{4}})?"
    rf"|\b{_MONTH}\s+\d{{4}}\b"
    r"|(?<!\d)\d{2,4}\s?年(?:\s?\d{1,2}\s?月(?:\s?\d{1,2}\s?日)?)?|(?<!\d)\d{1,2}\s?月\s?\d{1,2}\s?日"
    r"|(?<!\d)\d{2,4}\s?년(?:\s?\d{1,2}\s?월(?:\s?\d{1,2}\s?일)?)?|(?<!\d)\d{1,2}\s?월\s?\d{1,2}\s?일"
)
_YEAR = re.compile(r"(?<![\dA-Za-z.,/:-])(?:19|20)\d{2}(?![\dA-Za-z]|[.,:]\d)")
_TIME = re.compile(
    r"(?<![\d:])\d{1,2}:\d{2}(?::\d{2})?(?:\s?(?:[ap]\.m\.|[ap]m|AM|PM))?(?![\d:])"
    r"|(?<![\dA-Za-z])\d{1,2}\s?(?:[ap]\.m\.|[ap]m|AM|PM)(?![A-Za-z])"
)
_NUMBER = r"\d+(?:,\d{3})*(?:\.\d+)?"
_UNITS = (
    r"%|percent|km|kilomet(?:er|re)s?|miles?|mi|m|met(?:er|re)s?|cm|mm|ft|feet|foot|inch(?:es)?|kg|kilos?|g|grams?"
    r"|lbs?|pounds?|oz|l|lit(?:er|re)s?|ml|hours?|hrs?|h|minutes?|mins?|seconds?|secs?|days?|weeks?|months?|years?"
    r"|yrs?|yo|°\s?[CF]|degrees?|dollars?|bucks|euros?|yen|people|persons?|kids|children|times|pages|steps"
    r"|calories|kcal|mph|GB|MB|TB"
)
_CJK_UNITS = (
    r"歳|才|万円|円|ドル|人|匹|頭|羽|個|本|冊|回|時間|分|秒|日間|週間|ヶ月|か月|カ月|年間|年前|キロ|メートル|階|度"
    r"|元|块|岁|个|只|次|公里|살|원|명|마리|개|시간|분|번"
)
_QUANTITY = re.compile(
    rf"(?<![\w$€£¥₩])[$€£¥₩]\s?{_NUMBER}(?:\s?(?:k|K|bn|million|billion|thousand)(?![A-Za-z]))?"
    rf"|(?<![\w.]){_NUMBER}\s?(?:{_UNITS})(?![A-Za-z0-9])"
    rf"|(?<![\d.]){_NUMBER}\s?(?:{_CJK_UNITS})"
)
_HANDLE = re.compile(r"(?<![\w@.])@[A-Za-z0-9_](?:[A-Za-z0-9_.]*[A-Za-z0-9_])?")
_TAG = re.compile(r"(?<![\w#&/])#\w[\w-]*")

_PATTERNS = ((_DATE, "date"), (_TIME, "time"), (_QUANTITY, "quantity"), (_HANDLE, "handle"), (_TAG, "tag"),
             (_YEAR, "date"))
"""In priority order: a span taken by an earlier pattern is not matched again by a later one."""

_LETTER = "A-Za-z\u00c0-\u00d6\u00d8-\u00f6\u00f8-\u024f\u0370-\u03ff\u0400-\u04ff"
_WORD = re.compile(rf"[{_LETTER}](?:[{_LETTER}0-9'’-]*[{_LETTER}0-9])?")
_SENTENCE_BREAK = re.compile(r"[.!?…。！？\n\r:;\"“(\[「『]")
_NAME_GAP = re.compile(r"[ \t]+|[ \t]*&[ \t]*")
_NOT_NAMES = frozenset(
    """i i'm i've i'd i'll the a an my our your his her their its this that these those it it's we you he she they
    and but or so if when what who whom whose where why how which yes no not hi hey hello thanks thank ok okay oh
    well wow great nice cool sure also then there here today yesterday tomorrow tonight do does did is are was were
    be been can could would should will shall may might must let let's just as at in on for from with by to of after
    before since because about maybe please sorry good hmm haha lol omg btw user assistant mr mrs ms dr prof st
    don't didn't can't won't""".split()
)
_TITLES = frozenset({"mr", "mrs", "ms", "dr", "prof", "st"})
_CONNECTORS = frozenset({"of", "de", "da", "del", "della", "di", "du", "van", "von", "der", "den", "la", "le", "bin"})
_CALENDAR = frozenset(
    """january february march april may june july august september october november december jan feb mar apr jun
    jul aug sep sept oct nov dec monday tuesday wednesday thursday friday saturday sunday""".split()
)

_KANA = re.compile(r"[\u3040-\u30ff]")
_KATAKANA = re.compile(r"[\u30a1-\u30fa\u31f0-\u31ff\uff66-\uff9d][\u30a1-\u30ff\u31f0-\u31ff\uff66-\uff9f]*")
_KANJI = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0002ebef々〆]{2,}")
_HANGUL = re.compile(r"[\uac00-\ud7a3]{2,}")
_ZH_FUNCTION = re.compile(r"[的了在是我你他她它们和有不这那也就都很要会说去住叫吗呢吧啊个把被给对从跟还又才着过得么谁]+")
_KO_PARTICLES = ("에서", "에게", "까지", "부터", "으로", "처럼", "하고", "한테", "보다", *"은는을를에의가와과")
_KO_PREDICATE_ENDINGS = ("다", "요", "까", "죠", "네")
_KO_PRONOUNS = frozenset("저는 나는 제가 내가 저를 나를 저도 나도 너는 네가 그는 그가 우리 이건 그건 저건".split())

_Found = tuple[int, int, str, str]
"""(start, end, display name, type)."""


def find_entities(text: str) -> list[tuple[str, str]]:
    """Simple entities in reading order, each once (by :func:`memory.models.normalise_entity`), as (display, type):

    - ``quote``: short quoted strings ("…", “…”, ‘…’, '…', 「…」, 『…』; up to 6 words / 20 CJK characters);
    - ``date`` / ``time`` / ``quantity``: dates (2023-05-07, 5/7/2023, May 7, 7th of May 2023, 2023年5月7日, years),
      clock times, numbers with a unit or currency (5 km, $20, 3歳, 2匹);
    - ``handle`` / ``tag``: @handles and #tags;
    - ``name``: runs of capitalised words (``New York``, ``University of Tokyo``) minus leading function words; a
      single word that starts a sentence counts only if it is capitalised elsewhere in the text too or possessive
      (``Hanako's``);
    - CJK: katakana runs (``name``, e.g. ポチ), kanji runs (``term``, e.g. 札幌; in Chinese text, which has no kana,
      runs are split at common function characters) and hangul words (``term``, particles and predicates dropped),
      each of two or more characters.

    URLs and e-mail addresses are skipped. Never raises on any string."""
    mask = bytearray(len(text))
    masked = _URL_OR_EMAIL.sub(lambda m: " " * len(m.group()), text)
    found: list[_Found] = []
    for finder in (_quotes, _patterned, _names, _cjk):
        for start, end, display, kind in finder(masked):
            if display and len(display) <= MAX_ENTITY_CHARS and not any(mask[start:end]):
                mask[start:end] = b"\x01" * (end - start)
                found.append((start, end, display, kind))
    entities: dict[str, tuple[str, str]] = {}
    for _, _, display, kind in sorted(found):
        key = normalise_entity(display)
        if key and key not in entities:
            entities[key] = (display, kind)
    return list(entities.values())[:MAX_ENTITIES]


def _quotes(text: str) -> list[_Found]:
    found = []
    for match in _QUOTE.finditer(text):
        inner = next(group for group in match.groups() if group is not None).strip().strip(".,!?;:。、！？ ")
        cjk = _KANA.search(inner) or _KANJI.search(inner) or _HANGUL.search(inner)
        if inner and (len(inner) <= 20 if cjk and " " not in inner else len(inner.split()) <= 6):
            found.append((match.start(), match.end(), inner, "quote"))
    return found


def _patterned(text: str) -> list[_Found]:
    found = []
    for pattern, kind in _PATTERNS:
        for match in pattern.finditer(text):
            display = match.group().strip()
            if kind == "tag" and not any(ch.isalpha() for ch in display):
                continue
            found.append((match.start(), match.end(), display, kind))
    return found


def _names(text: str) -> list[_Found]:
    tokens: list[tuple[int, int, str]] = []
    possessive: set[int] = set()
    for match in _WORD.finditer(text):
        word = match.group()
        if word.endswith(("'s", "’s")) and len(word) > 2:
            word = word[:-2]
            possessive.add(len(tokens))
        tokens.append((match.start(), match.start() + len(word), word))
    capitalised = Counter(word.casefold() for _, _, word in tokens if word[0].isupper())
    runs: list[list[int]] = []
    for i, (start, _, word) in enumerate(tokens):
        joined = bool(runs) and runs[-1][-1] == i - 1 and _joins(text[tokens[i - 1][1] : start], tokens[i - 1][2])
        if word[0].isupper() or (word in _CONNECTORS and joined):
            if joined:
                runs[-1].append(i)
            else:
                runs.append([i])
    found = []
    for run in runs:
        while run and (_is_function_word(tokens[run[0]][2]) or tokens[run[0]][2] in _CONNECTORS):
            run.pop(0)
        while run and (_is_function_word(tokens[run[-1]][2]) or tokens[run[-1]][2] in _CONNECTORS):
            run.pop()
        if not run:
            continue
        (start, _, first), end = tokens[run[0]], tokens[run[-1]][1]
        previous = tokens[run[0] - 1] if run[0] else None
        at_sentence_start = previous is None or (
            _SENTENCE_BREAK.search(text[previous[1] : start]) is not None and previous[2].casefold() not in _TITLES
        )
        repeated = capitalised[first.casefold()] > 1 or run[0] in possessive  # "Hanako's dog …" names Hanako
        if len(run) == 1 and (len(first) < 2 or (at_sentence_start and not repeated)):
            continue
        kind = "date" if all(tokens[i][2].casefold() in _CALENDAR for i in run) else "name"
        found.append((start, end, text[start:end], kind))
    return found


def _joins(gap: str, previous: str) -> bool:
    return bool(_NAME_GAP.fullmatch(gap)) or (gap in (". ", ".") and previous.casefold() in _TITLES)


def _is_function_word(word: str) -> bool:
    return word.casefold().replace("’", "'") in _NOT_NAMES


def _cjk(text: str) -> list[_Found]:
    found: list[_Found] = []
    for match in _KATAKANA.finditer(text):
        run = match.group().rstrip("・")
        if sum(1 for ch in run if ch not in "ー・ヽヾｰ\uff9e\uff9f") >= 2:
            found.append((match.start(), match.start() + len(run), run, "name"))
    chinese = _KANA.search(text) is None
    for match in _KANJI.finditer(text):
        pieces = [(match.start(), match.group())]
        if chinese:
            spaced = _ZH_FUNCTION.sub(lambda m: " " * len(m.group()), match.group())
            pieces = [(match.start() + m.start(), m.group()) for m in re.finditer(r"\S+", spaced)]
        found.extend((start, start + len(piece), piece, "term") for start, piece in pieces if len(piece) >= 2)
    for match in _HANGUL.finditer(text):
        word = match.group()
        if word in _KO_PRONOUNS or word.endswith(_KO_PREDICATE_ENDINGS):
            continue
        for particle in _KO_PARTICLES:
            if word.endswith(particle) and len(word) - len(particle) >= 2:
                word = word[: -len(particle)]
                break
        found.append((match.start(), match.start() + len(word), word, "term"))
    return found
