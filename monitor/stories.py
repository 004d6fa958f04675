"""Near-duplicate clustering: articles that tell the same story join one story (issue #4).

Wire copies, lightly edited republications and an edited seed file share
most of their word 3-shingles. Each article gets a MinHash signature (128
permutations of its shingles' hashes); a locality-sensitive index over the
stored signatures (37 bands of 3 rows) finds candidates, and the candidate
with the highest estimated Jaccard similarity at or above ``THRESHOLD``
gives the story.

The threshold (0.5 on word 3-shingles) was chosen on the test stories in
tests/test_stories.py: copies with a changed dateline, a dropped or added
paragraph, or a rewritten headline score 0.6–0.95; different stories on the
same topic (the treaty wire vs the summit report) score under 0.1.

Both are written here in numpy rather than with datasketch: its
``update_batch`` hashes each shingle with SHA-1 in a Python loop and its LSH
handles each band in Python, 250 µs an article together, more than parsing
the item (bench/bench_feeds.py, issue #3). Here each word is hashed once
(CRC-32, remembered), a shingle's hash mixes its three words' hashes, and
the permutations and the minimum run over whole arrays: ~60 µs.

Signatures are stored with the article (``story_signatures``) and loaded
back into the in-memory index on start, so stories survive restarts. The
index holds only the newest ``CAPACITY`` signatures: wire copies of a story
arrive within hours or days of each other, and an unbounded index grew past
1.7 GiB after 100,000 articles (bench_feeds, 2,000 feeds) in a daemon meant to
run for months.
"""

from __future__ import annotations

import re
import zlib
from collections import OrderedDict
from collections.abc import Hashable, Iterable, Mapping
from functools import lru_cache
from typing import Any

import numpy as np

THRESHOLD = 0.5
NUM_PERM = 128
# Bands x rows for proposing candidates at a Jaccard of about 0.3 (what datasketch's
# optimiser picks for 128 permutations): the LSH only proposes, the estimate decides,
# so nearly every pair at 0.5 is found whatever the banding's S-curve does near it.
BANDS, ROWS = 37, 3
SHINGLE = 3
CAPACITY = 10_000  # newest signatures in memory: ~3 KiB each with their band keys
_WORD = re.compile(r"\w+")
_MAX = np.uint32(0xFFFFFFFF)

# The permutations: a * h + b (mod 2**32) with odd a, drawn once from a fixed seed so
# that every process and every restart computes the same signature for the same text.
_rng = np.random.RandomState(1)
_A = (_rng.randint(1, 1 << 31, NUM_PERM, dtype=np.uint64) * 2 + 1).astype(np.uint32)
_B = _rng.randint(0, 1 << 32, NUM_PERM, dtype=np.uint64).astype(np.uint32)
# Odd multipliers that make a shingle's hash depend on its words' order.
_MIX = (np.uint32(0x9E3779B1), np.uint32(0x85EBCA77), np.uint32(0xC2B2AE3D))

Signature = np.ndarray  # NUM_PERM uint32 minima


@lru_cache(maxsize=1 << 15)
def _word_hash(word: str) -> int:
    return zlib.crc32(word.encode())


def _fmix(h: np.ndarray) -> np.ndarray:
    """MurmurHash3's 32-bit finaliser: spreads CRC's linear bits over the whole word."""
    h = h ^ (h >> np.uint32(16))
    h = h * np.uint32(0x85EBCA6B)
    h = h ^ (h >> np.uint32(13))
    h = h * np.uint32(0xC2B2AE35)
    return h ^ (h >> np.uint32(16))


def shingle_hashes(text: str, size: int = SHINGLE) -> np.ndarray:
    """32-bit hashes of the lower-cased word n-grams; texts shorter than ``size`` give
    their words."""
    words = _WORD.findall(text.lower())
    hashes = np.fromiter(map(_word_hash, words), dtype=np.uint32, count=len(words))
    if len(words) >= size:
        mixed = hashes[: len(words) - size + 1] * _MIX[0]
        for k in range(1, size):
            mixed = mixed + hashes[k : len(words) - size + 1 + k] * _MIX[k % len(_MIX)]
        hashes = mixed
    return _fmix(hashes)


def signature(text: str) -> Signature:
    """The MinHash signature of ``text``'s shingles (all maxima for a text with no words)."""
    hashes = shingle_hashes(text)
    if not len(hashes):
        return np.full(NUM_PERM, _MAX, dtype=np.uint32)
    # Arithmetic mod 2**32: numpy wraps uint32 arrays silently (only scalars warn).
    return (hashes[:, None] * _A + _B).min(axis=0)


def similarity(a: Signature, b: Signature) -> float:
    """The estimated Jaccard similarity of the two signatures' shingle sets."""
    return float(np.count_nonzero(a == b)) / NUM_PERM


def encode(sig: Signature) -> bytes:
    return sig.astype("<u4").tobytes()


def decode(data: bytes) -> Signature | None:
    """A stored signature, or None if it was made by an older scheme (another size)."""
    if len(data) != NUM_PERM * 4:
        return None
    return np.frombuffer(data, dtype="<u4").astype(np.uint32)


def _band_keys(sig: Signature) -> list[bytes]:
    data = sig[: BANDS * ROWS].astype("<u4").tobytes()
    width = ROWS * 4
    return [data[i : i + width] for i in range(0, BANDS * width, width)]


class StoryIndex:
    """Article signatures -> stories, in memory; the store keeps the durable copy.

    Story ids below zero are placeholders for stories a poll has just found
    and not yet stored: ``settle`` replaces them once the store knows the ids.
    ``remember`` keys are the article's id when loaded, (source id, item key)
    when a poll adds it: either names one article.
    """

    def __init__(self, threshold: float = THRESHOLD, capacity: int = CAPACITY):
        self.threshold = threshold
        self.capacity = capacity
        self._bands: list[dict[bytes, set[Hashable]]] = [{} for _ in range(BANDS)]
        # key -> [story id, signature, band keys], oldest first
        self._members: OrderedDict[Hashable, list[Any]] = OrderedDict()
        self._unsettled: list[Hashable] = []
        self._assigned: tuple[bytes, Signature] | None = None  # the last one, not decoded again

    def __len__(self) -> int:
        return len(self._members)

    def load(self, rows: Iterable[tuple[int, int, bytes]]) -> None:
        """Rebuild from stored (article id, story id, signature) rows."""
        for article_id, story_id, data in rows:
            sig = decode(data)
            if sig is not None:
                self._insert(f"a{article_id}", story_id, sig)

    def assign(self, text: str) -> tuple[int | None, bytes]:
        """The story an article with this text belongs to (None: a new one), and its signature."""
        sig = signature(text)
        best, best_score = None, self.threshold
        candidates: set[Hashable] = set()
        for table, band in zip(self._bands, _band_keys(sig), strict=True):
            found = table.get(band)
            if found:
                candidates |= found
        for key in candidates:
            story_id, other, _ = self._members[key]
            score = similarity(sig, other)
            if score >= best_score:
                best, best_score = story_id, score
        data = encode(sig)
        self._assigned = (data, sig)
        return best, data

    def remember(self, key: Hashable, story_id: int, data: bytes) -> None:
        """Add an article's signature under ``key`` (its id, or any key unique to it)."""
        assigned = self._assigned
        sig = assigned[1] if assigned is not None and assigned[0] == data else decode(data)
        if sig is not None:
            self._insert(key, story_id, sig)
            self._unsettled.append(key)

    def settle(self, story_ids: Mapping[int, int]) -> None:
        """Replace the story ids of the signatures remembered since the last settle:
        placeholders (< 0) by the stored ids, and a pruned story by its successor."""
        for key in self._unsettled:
            member = self._members.get(key)
            if member is not None:
                member[0] = story_ids.get(member[0], member[0])
        self._unsettled.clear()

    def _insert(self, key: Hashable, story_id: int, sig: Signature) -> None:
        if key in self._members:
            return
        bands = _band_keys(sig)
        self._members[key] = [story_id, sig, bands]
        for table, band in zip(self._bands, bands, strict=True):
            table.setdefault(band, set()).add(key)
        while len(self._members) > self.capacity:
            oldest, (_, _, old_bands) = self._members.popitem(last=False)
            for table, band in zip(self._bands, old_bands, strict=True):
                keys = table[band]
                keys.discard(oldest)
                if not keys:
                    del table[band]
