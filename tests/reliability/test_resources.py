"""Resources and latency (RELIABILITY 3(c) 10, 11) of a real `monitor run` daemon: RSS and
open fds after 10 polls against after many; the SQLite -wal file's largest size;
poll-to-delivery latency on a healthy path; and memory under fresh text (spaCy keeps every
string it sees: monitor/tokens.py rebuilds its sentencizer every 50,000 docs, nlp.py
reloads an entity pipeline every 5,000). Figures only: no speed is asserted; a leak is."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from feedserver import FeedServer, GrowingFeeds

from casebook import figure, repetitions
from faultkit import TimedReceiver, eventually, feed_config, feeds_of, quantile

pytestmark = pytest.mark.reliability

FEEDS = 50


@pytest.fixture
def feeds() -> Iterator[GrowingFeeds]:
    server = FeedServer().start()
    yield GrowingFeeds(server, FEEDS, 5.0)
    server.stop()


def test_many_polls_leak_neither_memory_nor_fds(
    tmp_path: Path, feeds: GrowingFeeds, daemons: Any, request: pytest.FixtureRequest
) -> None:
    """RSS and open fds after many polls stay near what they were after 10 (no leak); the
    -wal file and poll-to-delivery latency are recorded."""
    polls = repetitions(request.config, fast=1000, full=10000)
    receiver = TimedReceiver().start()
    wal = tmp_path / "m.db-wal"
    wal_max = [0]
    try:
        config = feed_config(tmp_path, feeds_of(feeds), receiver.url())
        daemon = daemons(config, tmp_path / "daemon.log")
        daemon.wait_for("daemon started")

        def polled(n: int) -> bool:
            wal_max[0] = max(wal_max[0], wal.stat().st_size if wal.exists() else 0)
            return daemon.metrics()["monitor_polls_total"] >= n

        eventually(lambda: polled(10), "10 polls")
        early = (daemon.rss_kib(), daemon.open_fds())
        eventually(lambda: polled(polls), f"{polls} polls", 60 + polls / 5, every=0.5)
        late = (daemon.rss_kib(), daemon.open_fds())
        assert daemon.terminate() == 0
    finally:
        receiver.stop()
    latencies = delivery_latencies(feeds, receiver)
    figure("resources", f"daemon RSS MiB after 10 / {polls} polls",
           f"{early[0] / 1024:.0f} / {late[0] / 1024:.0f}")  # fmt: skip
    figure("resources", f"daemon open fds after 10 / {polls} polls", f"{early[1]} / {late[1]}")
    figure("resources", "SQLite -wal max size KiB", round(wal_max[0] / 1024))
    figure("latency", "poll-to-delivery p50/p95 s (first fetch serving the item -> receiver)",
           f"{quantile(latencies, 0.5):.2f}/{quantile(latencies, 0.95):.2f}"
           f" over {len(latencies)} items")  # fmt: skip
    assert late[1] <= early[1] + 10  # fds: a leak grows with every poll
    assert late[0] <= early[0] * 1.5 + 64 * 1024  # RSS: warm-up allowed, growth per poll not


def delivery_latencies(feeds: GrowingFeeds, receiver: TimedReceiver) -> list[float]:
    """For each delivered item: its reception time minus the first fetch that served it."""
    first_served: dict[str, float] = {}
    for fetch in feeds.fetches:
        if fetch.status == 200:
            for n in range(fetch.items):
                first_served.setdefault(feeds.link(fetch.feed, n), fetch.at)
    arrival: dict[str, float] = {}
    with receiver.changed:
        for (at, _, _), request in zip(receiver.arrivals, receiver.requests, strict=False):
            arrival.setdefault(request.json["article"]["url"], at)
    return sorted(arrival[u] - first_served[u] for u in arrival if u in first_served)


FRESH_TEXT = r"""
import json, random, resource, sys
from pathlib import Path
import spacy
from monitor.nlp import EntityRecognizer
from monitor.tokens import SENTENCIZER, TokenizedText

def rss():
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024

model = Path(sys.argv[2])
nlp = spacy.blank("en")
nlp.add_pipe("entity_ruler").add_patterns([{"label": "PERSON", "pattern": "Matsegora"}])
nlp.to_disk(model)
ner = EntityRecognizer(str(model))
rng, total, out = random.Random(1), int(sys.argv[1]), {}
for n in range(1, total + 1):
    words = [f"{rng.getrandbits(40):x}" for _ in range(60)]  # 60 never-seen strings
    body = " ".join(words[:30]) + ". Matsegora said " + " ".join(words[30:]) + "."
    text = TokenizedText.from_parts(f"Fresh story {n}", body)
    units = [text.sentence_units[i] for i in range(len(text))]  # NEAR/S's path
    if n % 10 == 0:
        text.sentences  # the whole-text sentencizer, now and then
    ner(text.text)
    if n in (1000, total):
        out[n] = {"rss_mib": round(rss(), 1), "ner_strings": ner.strings,
                  "sentencizer_strings": len(SENTENCIZER._nlp.vocab.strings)}
print(json.dumps(out))
"""


def test_fresh_text_keeps_spacy_memory_bounded(
    tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """Articles of never-seen words through the sentencizer and an entity pipeline: the
    process's RSS after N articles stays near its RSS after 1,000 (the vocabularies are
    rebuilt, so spaCy's StringStore cannot grow for months)."""
    # Found by this test, and fixed: the pipelines were rebuilt after N documents, and a
    # few thousand articles of new names grew RSS by 180 MiB before that; they are now
    # rebuilt once their vocabularies have 100,000 new strings (monitor/tokens.py, nlp.py).
    total = repetitions(request.config, fast=2000, full=100000)
    done = subprocess.run([sys.executable, "-c", FRESH_TEXT, str(total), str(tmp_path / "m")],
                          capture_output=True, text=True, timeout=1800)  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    found = {int(k): v for k, v in json.loads(done.stdout.splitlines()[-1]).items()}
    first, last = found[1000], found[total]
    figure("resources", f"RSS MiB after 1,000 / {total:,} articles of fresh text",
           f"{first['rss_mib']} / {last['rss_mib']}")  # fmt: skip
    figure("resources", f"entity pipeline strings after 1,000 / {total:,} (reload 5,000)",
           f"{first['ner_strings']} / {last['ner_strings']}")  # fmt: skip
    figure("resources", f"sentencizer strings after 1,000 / {total:,} (rebuilt at +100,000)",
           f"{first['sentencizer_strings']} / {last['sentencizer_strings']}")  # fmt: skip
    assert last["ner_strings"] < 100_000 + 2_000  # at most one bound's worth of new strings
    assert last["sentencizer_strings"] < 100_000 + 2_000
    assert last["rss_mib"] < first["rss_mib"] + 150
