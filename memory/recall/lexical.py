"""Lexical scoring: BM25 over each scope's memories, in memory, incremental, numpy-vectorised.

Tokens: case-folded words with a light English suffix stripper and a stop-word list; CJK runs (kana, kanji, hangul)
become overlapping character bigrams, plus, in Japanese text (it has kana), single non-hiragana characters, so
Japanese and Chinese text, which has no spaces, still matches sensibly.

Each document also keeps its memory's time (event time, else creation time), so recall can tell which candidates
belong to one episode of conversation without a store round trip (:meth:`LexicalIndex.times`).

Like the vector index, this is a derived index: rebuilt from the graph store at start and kept current from the
store's change log. Partitions are per scope; a search can only ever see its own scope's documents.
"""

from __future__ import annotations

import itertools
import math
import re
import sys
from array import array
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from memory.models import Scope

_WORD = re.compile(r"[^\W_]+(?:['’][^\W_]+)*", re.UNICODE)
_CJK = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uac00-\ud7af\u31f0-\u31ff\uff66-\uff9f]+")
"""Hiragana, katakana, CJK ideographs, hangul: scripts written without spaces between words."""


_KANA = re.compile(r"[\u3040-\u30ff\u31f0-\u31ff\uff66-\uff9f]")
"""Hiragana and katakana: the text is Japanese."""


def has_cjk(text: str) -> bool:
    """The text holds Chinese, Japanese or Korean script."""
    return _CJK.search(text) is not None

STOP_WORDS = frozenset(
    """a about above after again against all am an and any are as at be because been before being below between both
    but by can could did do does doing down during each few for from further had has have having he her here hers
    herself him himself his how i i'd i'll i'm i've if in into is it it's its itself just let's me more most my myself
    no nor not now of off on once only or other our ours ourselves out over own same she should so some such than
    that that's the their theirs them themselves then there these they this those through to too under until up very
    was we were what when where which while who whom why will with would you your yours yourself yourselves also
    really yeah yes oh hey hi ok okay so well get got go going gonna wanna thanks thank""".split()
)


def _stem(word: str) -> str:
    """A deliberately light suffix stripper (plural / -ing / -ed / -ly): enough to match "painting" and "paint"."""
    if len(word) <= 3 or not word.isascii():
        return word
    for suffix, keep in (("ies", "y"), ("sses", "ss"), ("ing", ""), ("edly", ""), ("ed", ""), ("ly", ""), ("es", "e"), ("s", "")):
        if word.endswith(suffix) and len(word) - len(suffix) >= 3:
            stem = word[: -len(suffix)] + keep
            if suffix == "s" and word.endswith(("ss", "us", "is")):
                return word
            if suffix in ("ing", "ed") and len(stem) >= 2 and stem[-1] == stem[-2] and stem[-1] not in "lsz":
                stem = stem[:-1]  # running -> run, stopped -> stop
            return stem
    return word


def tokenize(text: str) -> list[str]:
    tokens: list[str] = []
    lowered = text.casefold()
    for match in _WORD.finditer(lowered):
        word = match.group()
        cjk_runs = _CJK.findall(word)
        if cjk_runs:
            japanese = _KANA.search(lowered) is not None
            for run in cjk_runs:
                if len(run) > 1:
                    tokens.extend(run[i : i + 2] for i in range(len(run) - 1))
                if japanese or len(run) == 1:
                    # Japanese: particles split words, so single kanji / katakana carry meaning (犬 = dog) and
                    # must match across them; single hiragana are mostly the particles. Chinese keeps bigrams only
                    # (measured: README, Design measurements).
                    tokens.extend(ch for ch in run if not "\u3040" <= ch <= "\u309f")
            rest = _CJK.sub(" ", word).split()
            tokens.extend(_stem(w) for w in rest if w not in STOP_WORDS)
            continue
        word = word.replace("’", "'")
        if word in STOP_WORDS:
            continue
        if word.endswith("'s"):
            word = word[:-2]
        tokens.append(_stem(word))
    return tokens


CONTEXT_TF = 0.3
"""A word of a memory's context counts this much of a word of its own text."""


@dataclass(frozen=True, slots=True)
class LexicalItem:
    """What the lexical index keeps of one memory (see :meth:`LexicalIndex.add`)."""

    memory_id: str
    text: str
    at: float | None
    context: str = ""
    kind: int = 0
    tags: tuple[str, ...] = ()
    """Terms no text produces (a slot's tags, see :mod:`memory.recall.slot_questions`)."""


class _Postings:
    """One term's postings in compact typed arrays (4 + 4 bytes a posting; Python lists of int and float objects
    cost about 70). Searches read them through zero-copy numpy views that live only for the search."""

    __slots__ = ("docs", "tfs")

    def __init__(self) -> None:
        self.docs = array("i")
        self.tfs = array("f")

    def append(self, doc: int, tf: float) -> None:
        self.docs.append(doc)
        self.tfs.append(tf)

    def views(self) -> tuple[np.ndarray, np.ndarray]:
        return np.frombuffer(self.docs, dtype=np.int32), np.frombuffer(self.tfs, dtype=np.float32)


class _Partition:
    def __init__(self) -> None:
        self.ids: list[str] = []
        self.slot: dict[str, int] = {}
        # numpy arrays with spare capacity (doubling), so a query never converts a Python list of 100k items.
        self._lengths = np.zeros(64, dtype=np.float32)
        self._alive = np.zeros(64, dtype=bool)
        self._times = np.full(64, np.nan, dtype=np.float64)
        self._kinds = np.zeros(64, dtype=np.int8)
        self.postings: dict[str, _Postings] = {}
        self.live_count = 0
        self.total_length = 0.0

    @property
    def lengths(self) -> np.ndarray:
        return self._lengths[: len(self.ids)]

    @property
    def alive(self) -> np.ndarray:
        return self._alive[: len(self.ids)]

    @property
    def times(self) -> np.ndarray:
        return self._times[: len(self.ids)]

    @property
    def kinds(self) -> np.ndarray:
        return self._kinds[: len(self.ids)]

    def add_counts(
        self, memory_id: str, counts: Counter[str] | dict[str, float], at: float | None = None, kind: int = 0
    ) -> None:
        if memory_id in self.slot:
            self.remove(memory_id)
        doc = len(self.ids)
        if doc == len(self._lengths):
            self._lengths = np.concatenate([self._lengths, np.zeros(doc, dtype=np.float32)])
            self._alive = np.concatenate([self._alive, np.zeros(doc, dtype=bool)])
            self._times = np.concatenate([self._times, np.full(doc, np.nan, dtype=np.float64)])
            self._kinds = np.concatenate([self._kinds, np.zeros(doc, dtype=np.int8)])
        self.ids.append(memory_id)
        self.slot[memory_id] = doc
        length = float(sum(counts.values()))
        self._lengths[doc] = length
        self._alive[doc] = True
        self._times[doc] = np.nan if at is None else at
        self._kinds[doc] = kind
        self.live_count += 1
        self.total_length += length
        for term, tf in counts.items():
            postings = self.postings.get(term)
            if postings is None:
                # One string object per distinct term across all partitions, not one per partition.
                postings = self.postings[sys.intern(term)] = _Postings()
            postings.append(doc, float(tf))

    def remove(self, memory_id: str) -> None:
        doc = self.slot.pop(memory_id, None)
        if doc is None:
            return
        self._alive[doc] = False
        self.live_count -= 1
        self.total_length -= float(self._lengths[doc])
        # Postings keep the dead slot; scores for it are masked out. Compaction reclaims the space when it pays.

    @property
    def dead_fraction(self) -> float:
        return 1.0 - self.live_count / len(self.ids) if self.ids else 0.0


class LexicalIndex:
    """BM25 (k1, b) per scope. Not thread-safe: call from one thread (the event loop) or guard externally.

    The defaults suit chat memories, which are short: a low ``b`` (0.3) normalises length only a little, so a turn
    that says more is not pushed below a one-liner, and a low ``k1`` (0.9) saturates repeats quickly (measured on
    LoCoMo, see ``memory/bench/recall_quality.py``)."""

    def __init__(self, *, k1: float = 0.9, b: float = 0.3) -> None:
        self.k1 = k1
        self.b = b
        self._partitions: dict[Scope, _Partition] = {}

    def add(self, scope: Scope, memory_id: str, text: str, at: float | None = None, *, context: str = "",
            kind: int = 0, tags: Sequence[str] = ()) -> None:  # fmt: skip
        """Index (or re-index) one memory; ``at`` is its time (event time, else creation time), None if unknown.
        ``context``: text that says what the memory is about without being it (what a reply replied to): its words
        count ``CONTEXT_TF`` of a word of the text. ``kind``: a small number recall weighs the memory by (see
        :meth:`kinds`)."""
        partition = self._partitions.get(scope)
        if partition is None:
            partition = self._partitions[scope] = _Partition()
        counts: dict[str, float] = dict(Counter(tokenize(text)))
        for term in tokenize(context):
            counts[term] = counts.get(term, 0.0) + CONTEXT_TF
        for tag in tags:
            counts[tag] = 1.0
        partition.add_counts(memory_id, counts, at, kind)

    def add_many(self, scope: Scope, items: Iterable[LexicalItem]) -> None:
        for item in items:
            self.add(scope, item.memory_id, item.text, item.at, context=item.context, kind=item.kind, tags=item.tags)

    def remove(self, scope: Scope, memory_ids: Sequence[str]) -> None:
        partition = self._partitions.get(scope)
        if partition is None:
            return
        for memory_id in memory_ids:
            partition.remove(memory_id)
        if partition.dead_fraction > 0.3 and len(partition.ids) > 1000:
            self._compact(scope)

    def drop_scope(self, scope: Scope) -> None:
        self._partitions.pop(scope, None)

    def count(self, scope: Scope) -> int:
        partition = self._partitions.get(scope)
        return partition.live_count if partition else 0

    def times(self, scope: Scope, memory_ids: Sequence[str]) -> np.ndarray:
        """The memories' times (UNIX seconds), NaN where unknown or not indexed."""
        return self._column(scope, memory_ids, "times", np.nan)

    def times_and_kinds(self, scope: Scope, memory_ids: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`times` and :meth:`kinds` in one pass over the ids (recall's first stage reads both)."""
        docs = self._docs(scope, memory_ids)
        return self._column(scope, docs, "times", np.nan), self._column(scope, docs, "kinds", 0).astype(np.int8)

    def _docs(self, scope: Scope, memory_ids: Sequence[str]) -> np.ndarray:
        """Each memory's row in its partition, -1 where not indexed."""
        partition = self._partitions.get(scope)
        if partition is None or not partition.ids:
            return np.full(len(memory_ids), -1, dtype=np.int64)
        return np.fromiter(map(partition.slot.get, memory_ids, itertools.repeat(-1)), np.int64, len(memory_ids))

    def _column(self, scope: Scope, ids_or_docs: Sequence[str] | np.ndarray, name: str, missing: float) -> np.ndarray:
        docs = ids_or_docs if isinstance(ids_or_docs, np.ndarray) else self._docs(scope, ids_or_docs)
        partition = self._partitions.get(scope)
        if partition is None or not len(docs):
            return np.full(len(docs), missing, dtype=np.float64)
        return np.where(docs >= 0, getattr(partition, name)[docs], missing)  # -1 reads the last slot; masked out

    def search(self, scope: Scope, query: str, k: int, *, tags: Sequence[str] = ()) -> list[tuple[str, float]]:
        """Up to k (memory id, BM25 score > 0) of the scope, best first; ``tags`` are searched for too."""
        partition = self._partitions.get(scope)
        if partition is None or partition.live_count == 0 or k <= 0:
            return []
        terms = set(tokenize(query)).union(tags)
        if not terms:
            return []
        n_docs = len(partition.ids)
        scores = np.zeros(n_docs, dtype=np.float32)
        lengths = partition.lengths
        avg_length = max(partition.total_length / max(partition.live_count, 1), 1.0)
        touched = False
        alive = partition.alive if partition.dead_fraction else None
        for term in terms:
            postings = partition.postings.get(term)
            if postings is None:
                continue
            docs, tfs = postings.views()
            # Removed documents keep their postings until compaction; they must not count (a forgotten memory
            # leaves no trace in the ranking either).
            df = len(docs) if alive is None else int(np.count_nonzero(alive[docs]))
            if df == 0:
                continue
            idf = math.log(1.0 + (partition.live_count - df + 0.5) / (df + 0.5))  # > 0: df counts live documents
            norm = self.k1 * (1.0 - self.b + self.b * lengths[docs] / avg_length)
            scores[docs] += idf * tfs * (self.k1 + 1.0) / (tfs + norm)
            touched = True
        if not touched:
            return []
        if alive is not None:
            np.multiply(scores, alive, out=scores)
        # Only documents a query term touched can rank: select among those, not among every document. (A comparison
        # then nonzero on its booleans, and the k-th best value by partition, each take a fraction of the time that
        # nonzero on the floats and argpartition take at 100k documents.)
        hit = np.flatnonzero(scores > 0.0)
        if len(hit) > k:
            values = scores[hit]
            hit = hit[values >= np.partition(values, len(values) - k)[len(values) - k]]
        top = hit[np.argsort(-scores[hit], kind="stable")][:k]
        ids = partition.ids
        return [(ids[i], float(scores[i])) for i in top]

    def _compact(self, scope: Scope) -> None:
        """Rebuild a partition without its dead slots (the postings keep term counts, so no text is needed)."""
        old = self._partitions[scope]
        per_doc: dict[int, dict[str, float]] = {}
        alive = old.alive
        times = old.times
        kinds = old.kinds
        for term, postings in old.postings.items():
            for doc, tf in zip(postings.docs, postings.tfs, strict=True):
                if alive[doc]:
                    per_doc.setdefault(doc, {})[term] = tf
        fresh = _Partition()
        for doc, memory_id in enumerate(old.ids):
            if alive[doc]:
                at = float(times[doc])
                fresh.add_counts(memory_id, per_doc.get(doc, {}), None if math.isnan(at) else at, int(kinds[doc]))
        self._partitions[scope] = fresh
