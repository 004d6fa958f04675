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
import struct
import zlib
from collections import OrderedDict, deque
from collections.abc import Hashable, Iterable, Mapping
from itertools import repeat

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
# For ASCII text ``\w`` is exactly letters, digits and "_": every other ASCII character
# as a space lets ``str.split`` find the words ``_WORD`` finds, in C and ~4x faster.
# ``_WORD.findall`` was half of an article's signature (bench/bench_feeds.py, issue #3).
_ASCII_NOT_WORD = str.maketrans(
    {chr(c): " " for c in range(128) if not (chr(c).isalnum() or chr(c) == "_")}
)
_MAX = np.uint32(0xFFFFFFFF)

# The permutations: a * h + b (mod 2**32) with odd a, drawn once from a fixed seed so
# that every process and every restart computes the same signature for the same text.
_rng = np.random.RandomState(1)
_A = (_rng.randint(1, 1 << 31, NUM_PERM, dtype=np.uint64) * 2 + 1).astype(np.uint32)
_B = _rng.randint(0, 1 << 32, NUM_PERM, dtype=np.uint64).astype(np.uint32)
# Odd multipliers that make a shingle's hash depend on its words' order.
_MIX = (np.uint32(0x9E3779B1), np.uint32(0x85EBCA77), np.uint32(0xC2B2AE3D))

Signature = np.ndarray  # NUM_PERM uint32 minima


class _WordHashes(dict[str, int]):
    """Word -> CRC-32, remembered; ``map(_HASHES.__getitem__, words)`` looks known words up
    in C (an ``lru_cache`` call per word was a third of a signature). Emptied when full."""

    def __missing__(self, word: str) -> int:
        if len(self) >= 1 << 15:
            self.clear()
        h = self[word] = zlib.crc32(word.encode())
        return h


_HASHES = _WordHashes()


def _fmix(h: np.ndarray) -> np.ndarray:
    """MurmurHash3's 32-bit finaliser, in place: spreads CRC's linear bits over the word."""
    shifted = h >> np.uint32(16)
    h ^= shifted
    h *= np.uint32(0x85EBCA6B)
    np.right_shift(h, np.uint32(13), out=shifted)
    h ^= shifted
    h *= np.uint32(0xC2B2AE35)
    np.right_shift(h, np.uint32(16), out=shifted)
    h ^= shifted
    return h


def _words(lowered: str) -> list[str]:
    if lowered.isascii():
        return lowered.translate(_ASCII_NOT_WORD).split()
    return _WORD.findall(lowered)


def shingle_hashes(text: str, size: int = SHINGLE) -> np.ndarray:
    """32-bit hashes of the lower-cased word n-grams; texts shorter than ``size`` give
    their words."""
    words = _words(text.lower())
    n = len(words)
    hashes = np.fromiter(map(_HASHES.__getitem__, words), dtype=np.uint32, count=n)
    if n >= size:
        mixed = hashes[: n - size + 1] * _MIX[0]
        for k in range(1, size):
            mixed += hashes[k : n - size + 1 + k] * _MIX[k % len(_MIX)]
        hashes = mixed
    return _fmix(hashes)


def signature(text: str) -> Signature:
    """The MinHash signature of ``text``'s shingles (all maxima for a text with no words)."""
    hashes = shingle_hashes(text)
    if not len(hashes):
        return np.full(NUM_PERM, _MAX, dtype=np.uint32)
    # Arithmetic mod 2**32: numpy wraps uint32 arrays silently (only scalars warn).
    permuted = np.multiply.outer(hashes, _A)
    permuted += _B
    return permuted.min(axis=0)


def signature_bytes(text: str) -> bytes:
    """``signature`` as stored."""
    return encode(signature(text))


def story_note(text: str) -> bytes:
    """What a parse worker computes for each article it reads: the stored signature, then
    its band keys, so that the daemon's own GIL does neither (bench/bench_feeds.py)."""
    return _note_of(signature(text))


def similarity(a: Signature, b: Signature) -> float:
    """The estimated Jaccard similarity of the two signatures' shingle sets."""
    return float(np.count_nonzero(a == b)) / NUM_PERM


def encode(sig: Signature) -> bytes:
    return sig.astype("<u4").tobytes()


SIGNATURE_BYTES = NUM_PERM * 4


def decode(data: bytes) -> Signature | None:
    """A stored signature, or None if it was made by an older scheme (another size)."""
    if len(data) != SIGNATURE_BYTES:
        return None
    return np.frombuffer(data, dtype="<u4").astype(np.uint32)


# Odd 64-bit multipliers folding a band's rows into one key.
_BAND_MIX = np.array([0x9E3779B97F4A7C15, 0xC2B2AE3D27D4EB4F, 0x165667B19E3779F9], dtype=np.uint64)
_KEYS = struct.Struct(f"<{BANDS}Q")
NOTE_BYTES = SIGNATURE_BYTES + _KEYS.size


def _note_of(sig: Signature) -> bytes:
    """The signature, then one key per band folded from its rows in one array operation (a
    Python loop over the bands was a third of clustering an article). Two row triples
    folding to one key only add a candidate, which the similarity check then turns down."""
    rows = sig[: BANDS * ROWS].reshape(BANDS, ROWS).astype(np.uint64)
    folded = rows[:, 0] * _BAND_MIX[0]
    for r in range(1, ROWS):
        folded ^= rows[:, r] * _BAND_MIX[r]
    return encode(sig) + folded.astype("<u8").tobytes()


def _as_note(data: bytes) -> bytes | None:
    """A note as it is (a parse worker's), or made from a stored signature; None for a
    signature of an older scheme."""
    if len(data) == NOTE_BYTES:
        return data
    sig = decode(data)
    return None if sig is None else _note_of(sig)


def _signature_of(note: bytes) -> Signature:
    return np.frombuffer(note, dtype="<u4", count=NUM_PERM)


class StoryIndex:
    """Article signatures -> stories, in memory; the store keeps the durable copy.

    Story ids below zero are placeholders for stories a poll has just found
    and not yet stored: ``settle`` replaces them once the store knows the ids.
    Members are named ``a<article id>`` when loaded, ``s<source id>:<item key>``
    when a poll adds them: either names one article. Each member is kept as its
    note (signature and band keys as bytes, see ``story_note``): a signature is
    decoded only to be compared with a candidate's, and eviction needs no
    recomputing of band keys.
    """

    def __init__(self, threshold: float = THRESHOLD, capacity: int = CAPACITY):
        self.threshold = threshold
        self.capacity = capacity
        # Per band, band key -> the member key, or a tuple of them when several share the
        # band. Strings and tuples of strings, not a set per band: 37 new containers an
        # article kept the garbage collector walking a growing heap (py-spy, issue #3).
        # One dict per band, not one for all: the 370,000 keys in one table cost 20 MiB,
        # and each of its resizes under eviction's churn held a second table for a moment,
        # 40 MiB over the daemon's resting RSS (bench/bench_feeds.py peaked at 302 MiB).
        self._bands: tuple[dict[int, str | tuple[str, ...]], ...] = tuple({} for _ in range(BANDS))
        self._notes: OrderedDict[str, bytes] = OrderedDict()  # oldest first
        self._stories: dict[str, int] = {}
        self._unsettled: list[str] = []

    def __len__(self) -> int:
        return len(self._notes)

    def load(self, rows: Iterable[tuple[int, int, bytes]]) -> None:
        """Rebuild from stored (article id, story id, signature) rows."""
        for article_id, story_id, data in rows:
            note = _as_note(data)
            if note is not None:
                self._insert(f"a{article_id}", story_id, note)

    def assign(self, text: str, data: bytes | None = None) -> tuple[int | None, bytes]:
        """The story an article with this text belongs to (None: a new one), and its note
        (``remember`` takes it; its first ``SIGNATURE_BYTES`` are what is stored).

        ``data``: the text's note (``story_note``) or signature, already made (by a
        parse worker).
        """
        note = _as_note(data) if data is not None else None
        if note is None:
            note = _note_of(signature(text))
        best, best_score = None, self.threshold
        candidates: set[str] = set()
        # map() keeps the 37 lookups in C; only the bands that hold something loop here.
        keys = _KEYS.unpack_from(note, SIGNATURE_BYTES)
        for found in filter(None, map(dict.get, self._bands, keys)):
            candidates.update((found,) if isinstance(found, str) else found)
        if candidates:
            sig = _signature_of(note)
            for key in candidates:
                score = similarity(sig, _signature_of(self._notes[key]))
                if score >= best_score:
                    best, best_score = self._stories[key], score
        return best, note

    @staticmethod
    def stored(note: bytes) -> bytes:
        """The part of a note that is stored: the signature."""
        return note[:SIGNATURE_BYTES]

    def remember(self, key: Hashable, story_id: int, note: bytes) -> None:
        """Add an article's note (from ``assign``) under ``key`` (its id, or anything
        unique to it)."""
        made = _as_note(note)  # a signature alone makes one too
        if made is None:
            return
        name = str(key)
        self._insert(name, story_id, made)
        self._unsettled.append(name)

    def settle(self, story_ids: Mapping[int, int]) -> None:
        """Replace the story ids of the signatures remembered since the last settle:
        placeholders (< 0) by the stored ids, and a pruned story by its successor."""
        stories = self._stories
        for key in self._unsettled:
            story = stories.get(key)
            if story is not None:
                stories[key] = story_ids.get(story, story)
        self._unsettled.clear()

    def _insert(self, key: str, story_id: int, note: bytes) -> None:
        if key in self._notes:
            return
        self._notes[key] = note
        self._stories[key] = story_id
        keys = _KEYS.unpack_from(note, SIGNATURE_BYTES)
        held = list(map(dict.get, self._bands, keys))
        if not any(held):  # the usual case: every band is new, filled in C
            deque(map(dict.__setitem__, self._bands, keys, repeat(key)), maxlen=0)
        else:
            for band, band_key, found in zip(self._bands, keys, held, strict=True):
                if found is None:
                    band[band_key] = key
                else:
                    band[band_key] = (found, key) if isinstance(found, str) else (*found, key)
        while len(self._notes) > self.capacity:
            self._evict()

    def _evict(self) -> None:
        oldest, note = self._notes.popitem(last=False)
        del self._stories[oldest]
        keys = _KEYS.unpack_from(note, SIGNATURE_BYTES)
        # Popped in C; the bands it shared are put back below.
        held = list(map(dict.pop, self._bands, keys, repeat(None)))
        if held.count(oldest) == len(held):
            return  # the usual case: it shared no band
        for band, band_key, found in zip(self._bands, keys, held, strict=True):
            if found is None or isinstance(found, str):
                continue  # a string can only be ``oldest``
            rest = tuple(k for k in found if k != oldest)
            band[band_key] = rest[0] if len(rest) == 1 else rest
