"""Whether two memories' texts read alike, beside their vectors: the guard on near-duplicate merges.

A merge keeps one text and drops the other, so it must only join memories that say the same thing. The embedding
model alone cannot tell: all-MiniLM-L6-v2 reads Chinese and Japanese as noise ("Lisa got a jade pendant from her
grandmother" / "Lisa got a pen from her uncle" sit at cosine 0.99), and it barely sees the one token that makes a
fact different ("my parcel code is X7Q2" / "… is K9L4", "I met Tom" / "I met Tim"). So texts read alike only if
- their numbers and codes (tokens with a digit) and their names (capitalised words) are the same, either way;
- in CJK script, their words (character bigrams, as the lexical index reads them) overlap by ``CJK_OVERLAP``."""

from __future__ import annotations

import re

from memory.recall.lexical import has_cjk, tokenize

CJK_OVERLAP = 0.9
"""The Dice overlap of two CJK texts' distinct tokens at or above which they count as the same words."""
_MARKED = re.compile(r"(?<![A-Za-z0-9])(?:[A-Za-z]*[0-9][A-Za-z0-9]*|[A-Z][A-Za-z]*)(?![A-Za-z0-9])")
_WORDS = re.compile(r"[A-Za-z0-9]+")


def reads_alike(first: str, second: str) -> bool:
    if not (_same_marked(first, second) and _same_marked(second, first)):
        return False
    if not (has_cjk(first) or has_cjk(second)):
        return True
    a, b = set(tokenize(first)), set(tokenize(second))
    if not a or not b:
        return a == b
    return 2 * len(a & b) / (len(a) + len(b)) >= CJK_OVERLAP


def _same_marked(text: str, other: str) -> bool:
    """Every number, code and name of ``text`` is a word of ``other`` (case aside)."""
    words = {word.casefold() for word in _WORDS.findall(other)}
    return all(token.casefold() in words for token in _MARKED.findall(text))
