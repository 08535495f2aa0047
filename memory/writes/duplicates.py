"""Whether two memories' texts read alike, beside their vectors: the guard on near-duplicate merges for script the
main embedding model cannot read.

all-MiniLM-L6-v2 sees Chinese and Japanese as noise, so two different CJK memories ("Lisa got a jade pendant from
her grandmother" / "Lisa got a pen from her uncle") can sit at cosine 0.95 or more and would merge, one of them
lost. A merge of text in CJK script therefore also needs the texts' own words (character bigrams, as the lexical
index reads them) to overlap."""

from __future__ import annotations

from memory.recall.lexical import has_cjk, tokenize

CJK_OVERLAP = 0.9
"""The Dice overlap of two texts' distinct tokens at or above which CJK texts count as the same words."""


def reads_alike(first: str, second: str) -> bool:
    """True unless either text is in CJK script and their tokens overlap less than :data:`CJK_OVERLAP`."""
    if not (has_cjk(first) or has_cjk(second)):
        return True
    a, b = set(tokenize(first)), set(tokenize(second))
    if not a or not b:
        return a == b
    return 2 * len(a & b) / (len(a) + len(b)) >= CJK_OVERLAP
