"""Near-duplicate clustering: articles that tell the same story join one story (issue #4).

Wire copies, lightly edited republications and an edited seed file share
most of their word 3-shingles. Each article gets a MinHash signature
(datasketch, 128 permutations, ``update_batch`` is 8x faster than
``update`` per shingle: DESIGN.md, measured facts); a MinHashLSH index over
the stored signatures finds candidates, and the candidate with the highest
estimated Jaccard similarity at or above ``THRESHOLD`` gives the story.

The threshold (0.5 on word 3-shingles) was chosen on the test stories in
tests/test_stories.py: copies with a changed dateline, a dropped or added
paragraph, or a rewritten headline score 0.6–0.95; different stories on the
same topic (the treaty wire vs the summit report) score under 0.1.

Signatures are stored with the article (``story_signatures``) and loaded
back into the in-memory index on start, so stories survive restarts. The
index holds only the newest ``CAPACITY`` signatures: wire copies of a story
arrive within hours or days of each other, and an unbounded index grew past
1.7 GiB after 100,000 articles (bench_feeds, 2,000 feeds) in a daemon meant to
run for months.
"""

from __future__ import annotations

import re
from collections import OrderedDict
from collections.abc import Iterable
from functools import cache

import numpy as np
from datasketch import MinHash, MinHashLSH

THRESHOLD = 0.5
# The LSH only proposes candidates; a lower banding threshold finds nearly every pair at 0.5
# and the exact estimate below decides, so recall does not hinge on the banding's S-curve.
CANDIDATE_THRESHOLD = 0.3
NUM_PERM = 128
# Stored signatures must be read back with the scheme that made them (datasketch 2.0 asks).
SCHEME = "affine32"
SHINGLE = 3
CAPACITY = 10_000  # newest signatures in memory: ~14 KiB each with the LSH bands (measured)
_WORD = re.compile(r"\w+")


def shingles(text: str, size: int = SHINGLE) -> set[bytes]:
    """Lower-cased word n-grams; texts shorter than ``size`` words give their words."""
    words = _WORD.findall(text.lower())
    if len(words) < size:
        return {w.encode() for w in words}
    return {" ".join(words[i : i + size]).encode() for i in range(len(words) - size + 1)}


@cache
def _permutations() -> np.ndarray:
    """The seed's permutation parameters: datasketch draws them again for every MinHash
    unless given (~70 % of clustering an article, bench/bench_feeds.py, issue #3)."""
    return MinHash(num_perm=NUM_PERM, seed=1, scheme=SCHEME).permutations


def signature(text: str) -> MinHash:
    sig = MinHash(num_perm=NUM_PERM, seed=1, scheme=SCHEME, permutations=_permutations())
    sig.update_batch(list(shingles(text)))
    return sig


def encode(sig: MinHash) -> bytes:
    return np.asarray(sig.hashvalues, dtype=np.uint64).tobytes()


def decode(data: bytes) -> MinHash:
    values = np.frombuffer(data, dtype=np.uint64).copy()
    return MinHash(
        num_perm=NUM_PERM, seed=1, hashvalues=values, scheme=SCHEME, permutations=_permutations()
    )


class StoryIndex:
    """Article signatures -> stories, in memory; the store keeps the durable copy."""

    def __init__(self, threshold: float = THRESHOLD, capacity: int = CAPACITY):
        self.threshold = threshold
        self.capacity = capacity
        self._lsh = MinHashLSH(threshold=min(threshold, CANDIDATE_THRESHOLD), num_perm=NUM_PERM)
        self._members: OrderedDict[str, tuple[int, MinHash]] = OrderedDict()  # oldest first
        self._assigned: tuple[bytes, MinHash] | None = None  # the last signature, not decoded again

    def __len__(self) -> int:
        return len(self._members)

    def load(self, rows: Iterable[tuple[int, int, bytes]]) -> None:
        """Rebuild from stored (article id, story id, signature) rows."""
        for article_id, story_id, data in rows:
            self._insert(f"a{article_id}", story_id, decode(data))

    def assign(self, text: str) -> tuple[int | None, bytes]:
        """The story an article with this text belongs to (None: a new one), and its signature."""
        sig = signature(text)
        best, best_score = None, self.threshold
        for key in self._lsh.query(sig):
            story_id, other = self._members[key]
            score = sig.jaccard(other)
            if score >= best_score:
                best, best_score = story_id, score
        data = encode(sig)
        self._assigned = (data, sig)
        return best, data

    def remember(self, article_id: int, story_id: int, data: bytes) -> None:
        assigned = self._assigned
        sig = assigned[1] if assigned is not None and assigned[0] == data else decode(data)
        self._insert(f"a{article_id}", story_id, sig)

    def _insert(self, key: str, story_id: int, sig: MinHash) -> None:
        if key in self._members:
            return
        self._members[key] = (story_id, sig)
        self._lsh.insert(key, sig)
        while len(self._members) > self.capacity:
            oldest, _ = self._members.popitem(last=False)
            self._lsh.remove(oldest)
