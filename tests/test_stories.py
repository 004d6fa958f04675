"""One alert per story: near-duplicate copies from three outlets join one story (MinHash/LSH),
a rule alerts once per story, the count grows, and the index survives a restart."""

from __future__ import annotations

import hashlib
from itertools import combinations
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlmodel import select

from flows import SUMMIT, make_flow, webhook_sink
from monitor.store.tables import DeliveryRow
from monitor.stories import (
    _WORD,
    THRESHOLD,
    StoryIndex,
    _words,
    signature,
    signature_bytes,
    similarity,
    story_note,
)
from receivers import running

# Five copies of one story as wire services and republishers run it.
COPIES = [
    SUMMIT,
    SUMMIT.replace("PYONGYANG, June 19 —", "MOSCOW, June 19 (Reuters) —"),
    SUMMIT.replace(
        "# Putin and Kim hold summit in Pyongyang", "# Kim hosts Putin for summit talks"
    ),
    SUMMIT + "\nThe Kremlin said further talks were planned for next year.\n",
    SUMMIT.replace(
        "their second meeting in nine months", "the second such meeting this year"
    ).replace("signed a number of documents", "signed several documents"),
]
OTHER_STORIES = [  # the same beat, different stories: each must stay its own story
    "# North Korea–Russia defence treaty enters into force\n\nA treaty that commits North Korea"
    " and Russia to come to each other's aid took effect on Wednesday after the exchange of"
    " ratification instruments in Moscow, Russia's foreign ministry said.\n",
    "# UN panel says Pyongyang shipped shells to Russia\n\nA confidential report by UN sanctions"
    " monitors says North Korea sent millions of artillery shells to Russia by rail and sea,"
    " in breach of Security Council resolutions.\n",
    "# Putin leaves Pyongyang for Vietnam\n\nPutin was scheduled to leave for Vietnam after the"
    " Pyongyang leg of his tour, which officials described as a working visit.\n",
]


def test_threshold_separates_copies_from_other_stories() -> None:
    """Each copy's best match among the earlier copies scores at or above the threshold, and
    every pair across different stories scores below it (precision 1.0 on these stories)."""
    sigs = [signature(t) for t in COPIES + OTHER_STORIES]
    best = [max(similarity(sigs[n], sigs[m]) for m in range(n)) for n in range(1, len(COPIES))]
    copies = range(len(COPIES))
    cross = [similarity(sigs[a], sigs[b]) for a, b in combinations(range(len(sigs)), 2)
             if not (a in copies and b in copies)]  # fmt: skip
    assert min(best) >= THRESHOLD > max(cross)


def test_index_clusters_copies_and_keeps_other_stories_apart() -> None:
    """Assigning copies then other stories: copies share one story id, others get new ones."""
    index = StoryIndex()
    stories = []
    for n, text in enumerate(COPIES + OTHER_STORIES):
        story, sig = index.assign(text)
        story = story if story is not None else 100 + n
        index.remember(n, story, sig)
        stories.append(story)
    assert len(set(stories[: len(COPIES)])) == 1
    assert len(set(stories)) == 1 + len(OTHER_STORIES)


@pytest.mark.parametrize("restart", [False, True])
def test_five_copies_from_three_outlets_alert_once_per_rule(tmp_path: Path, restart: bool) -> None:
    """Five copies from three folders give one alert per matching rule with story.articles == 5;
    the copies' hits are stored but their deliveries are suppressed; a different story on the same
    topic still alerts. With ``restart``, the last copies arrive after a restart."""
    with running() as receiver:
        flow = make_flow(tmp_path, webhook_sink(receiver.url()), folders=3)
        for n, text in enumerate(COPIES[:3]):
            flow.drop(f"copy{n}.md", text, folder=n % 3)
        flow.pipeline.poll_all(settle_seconds=0)
        if restart:
            flow.close()
            flow = make_flow(tmp_path, webhook_sink(receiver.url()), folders=3)
        for n, text in enumerate(COPIES[3:], start=3):
            flow.drop(f"copy{n}.md", text, folder=n % 3)
        flow.drop("treaty.md", OTHER_STORIES[0], folder=1)
        flow.pipeline.poll_all(settle_seconds=0)
        flow.pipeline.deliver_due()
        flow.close()
    summit = [r.json for r in receiver.requests if r.json["rule"]["id"] == "summit"]
    assert len(summit) == 1 and summit[0]["story"]["articles"] == 5
    treaty = [r.json for r in receiver.requests if r.json["rule"]["id"] == "treaty"]
    assert len(treaty) == 1 and treaty[0]["story"]["articles"] == 1
    assert len(flow.store.hits(rule="summit")) == 5  # no hit is lost, only the alerts
    with flow.store.reading() as s:
        suppressed = list(s.exec(select(DeliveryRow).where(DeliveryRow.status == "suppressed")))
    assert len(suppressed) == 4
    assert {r.last_error for r in suppressed} == {"story_already_alerted"}


def test_realert_window_suppresses_then_allows(tmp_path: Path) -> None:
    """`realert: 6h`: a second, different story within 6 h is suppressed; after 6 h it alerts."""
    watchlist = "rules:\n  - {id: treaty, query: treaty, realert: 6h}\n"
    with running() as receiver:
        flow = make_flow(tmp_path, webhook_sink(receiver.url()), watchlist=watchlist)
        for n, text in enumerate([OTHER_STORIES[0], "# Treaty talk\n\nA new treaty on fishing.\n"]):
            flow.drop(f"s{n}.md", text)
            flow.pipeline.poll_all(settle_seconds=0)
            flow.clock.advance(hours=1)
        flow.clock.advance(hours=6)
        flow.drop("s9.md", "# Another treaty\n\nA trade treaty was signed in Seoul by officials.\n")
        flow.pipeline.poll_all(settle_seconds=0)
        flow.pipeline.deliver_due()
        flow.close()
    assert len(receiver.requests) == 2
    with flow.store.reading() as s:
        statuses = sorted(r.last_error or r.status for r in s.exec(select(DeliveryRow)))
    assert statuses == ["delivered", "delivered", "realert_window"]


def test_index_keeps_only_the_newest_signatures() -> None:
    """The in-memory index is bounded: past its capacity the oldest signatures leave it."""
    index = StoryIndex(capacity=3)
    texts = [f"story number {i} about a port visit by envoy {i} in city {i}" for i in range(5)]
    for article_id, text in enumerate(texts, start=1):
        story, data = index.assign(text)
        index.remember(article_id, story or article_id, data)
    assert len(index) == 3
    assert index.assign(texts[0])[0] is None  # evicted: no longer joins its old story
    assert index.assign(texts[4])[0] == 5  # kept


def test_evicting_a_copy_keeps_the_story_through_the_copies_that_share_its_bands() -> None:
    index = StoryIndex(capacity=3)
    for article_id, text in enumerate(COPIES[:3], start=1):
        story, data = index.assign(text)
        index.remember(article_id, story or 100, data)
    index.remember(4, 200, index.assign(OTHER_STORIES[0])[1])  # evicts the first copy
    assert len(index) == 3
    assert index.assign(COPIES[0])[0] == 100  # still found, through the copies left
    members = {key for band in index._bands for held in band.values()
               for key in ((held,) if isinstance(held, str) else held)}  # fmt: skip
    assert members == {"2", "3", "4"}  # the evicted copy is gone from every band


@given(st.text(alphabet=st.characters(max_codepoint=127)) | st.text())
def test_words_fast_path_finds_what_the_regex_finds(text: str) -> None:
    # Signatures are stored: the ASCII fast path must give exactly the regex's words, or a
    # story told before an upgrade would not be recognised after it.
    lowered = text.lower()
    assert _words(lowered) == _WORD.findall(lowered)


def test_a_worker_note_a_stored_signature_and_the_text_find_the_same_story() -> None:
    index = StoryIndex()
    story, note = index.assign(COPIES[0])
    assert story is None and note == story_note(COPIES[0])  # what a parse worker hands over
    assert index.stored(note) == signature_bytes(COPIES[0])  # what the store keeps
    index.remember(1, 7, note)
    copy = COPIES[1]
    for data in (None, story_note(copy), signature_bytes(copy), b"older scheme"):
        assert index.assign(copy, data)[0] == 7
    index.remember(2, 7, signature_bytes(copy))  # a signature alone is a note too
    assert len(index) == 2


def test_signatures_and_band_keys_are_the_stored_scheme() -> None:
    """Notes are byte for byte what earlier versions made (a digest taken before the
    signature code was sped up), so signatures stored by them keep finding their copies."""
    texts = [
        "",
        "Pyongyang",
        "North Korea",
        "Kim Jong Un met Putin in Pyongyang for summit talks.",
        "Ünïcode wörds: Matsegora said ça va, 北朝鮮 と ロシア.\n\n"
        "Second paragraph, with digits 2024 and U.S. spelling.",
    ]
    digest = hashlib.blake2b(digest_size=16)
    for text in texts:
        digest.update(story_note(text))
    assert digest.hexdigest() == "e4220dd7e8b31e341f0ae0cd1ece3e03"
