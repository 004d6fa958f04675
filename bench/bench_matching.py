"""Matching at scale: the presearch index on two rule sets, against the keyword filter and
the floor.

Two rule sets, each over its own 2,000 ~600-word articles, at 1,000, 10,000 and 100,000
rules, parsed with word forms on (``forms="inflected"``, every bare word matches its
inflections):

- generated: the rules of issue #5, mixing terms, phrases, wildcards, NEAR (n, S),
  ``title:`` and entities; most hang on a rare name and the rest on synthetic topic
  words, and the articles are sentences of a small list of common words with topic
  words and names strewn in. Every key here is rare by construction.
- realistic: what an analyst's watchlist looks like: a name (or an entity) ANDed with
  a context group of common news words ("delegation", "committee", "shipments",
  "Vladivostok"), wildcards on common stems (``sanction*``, ``export*``, ``minist*``),
  context groups first as often as last, and topical rules of one less common real
  word plus a context group. Its articles are English as wordfreq counts it: 95 % of
  the tokens are drawn from wordfreq's 40,000 commonest English words by their
  frequency, 5 % from the rules' news vocabulary (each such word then occurs in about
  a third of the articles, as a beat's own words do in tests/labelled), and the names
  are strewn in as in the generated set. A key chosen by word length alone lands on a
  context word most of these articles contain.

Measured in the same run, on one core, as CPU time (``time.process_time``: other work on
the machine then slows a figure less than it stretches the wall clock):

- floor: tokenising alone (``TokenizedText``, what any matcher needs first); the
  goals are ratios to it, since this machine's speed wanders between runs;
- index: ``Matcher`` (presearch, then exact evaluation of the candidates), given the
  document frequencies of 1,000 other articles of the same set, as the daemon gives
  it those of its recently stored articles (``monitor.rarity``);
- keyword filter: the Huginn TriggerAgent / Miniflux filter way, a compiled regex per
  rule term scanned over the text, then the boolean (NEAR becomes AND: such filters
  have no proximity). It is so slow that it runs on 3 articles; at 100,000 rules it
  is not built at all (300,000 regexes) and its rate is the 10,000 rules' over ten,
  which is exact for a cost linear in the rules by construction; the table marks it.

Every rule added in the rows hits as often as the first ones (a rule on a rare name
hits the articles that mention it), so 10x the rules is also about 10x the hits per
article. Progress goes to stderr.

Run: ``make bench`` (or ``.venv/bin/python bench/bench_matching.py``).
"""

from __future__ import annotations

import gc
import itertools
import multiprocessing
import random
import re
import resource
import sys
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime

import wordfreq

from monitor.domain import Article, Entity, Rule
from monitor.match import Matcher
from monitor.query import (
    And,
    EntityRef,
    Near,
    Node,
    Not,
    Or,
    Phrase,
    Query,
    Source,
    Term,
    Title,
    parse_query,
)
from monitor.rarity import document_frequencies, word_table
from monitor.tokens import TokenizedText

ARTICLES = 2000
SAMPLE = 1000  # articles whose document frequencies the index is given
RULE_COUNTS = (1000, 10_000, 100_000)
KEYWORD_ARTICLES = 3
BUDGET = 8.0  # seconds of timed passes per row, past the first
SEED = 5
NOW = datetime(2024, 6, 19, tzinfo=UTC)

COMMON = """sanctions visited summits ministry negotiators exports the of to and a in that is for on
with as was by he it said at from his an be has have are were which this not but or its
had they their after been who will more would about also one two over than into new year
government officials state people minister president country military security talks
meeting told week report foreign agency defense statement last could some when there
under since while between against during trade economic leader national forces region
border plan support called""".split()  # noqa: SIM905
SYLLABLES = """ka ri mo tse gor va lin do pak chu sen ya hwa mir zo bel tar kov nes ul
an ek im ost ra
vi del ju ha mun sok yev gen dra""".split()  # noqa: SIM905
# The realistic rules' context words: long, and common in the news.
NEWS = """delegation committee shipments vladivostok government ministry minister officials
agreement parliament election investigation cooperation negotiations announcement statement
spokesman conference military security economic president sanctions exports embassy
ambassador summit talks meeting visit report foreign defense trade nuclear missile border
agency council treaty alliance diplomatic envoy pyongyang cargo vessels authorities
production international program weapons""".split()  # noqa: SIM905
STEMS = """sanction export minist negotiat diplomat militar offici econom govern invest secur
cooperat agree announc elect deliver ship""".split()  # noqa: SIM905


def _word(rng: random.Random, parts: int) -> str:
    return "".join(rng.choice(SYLLABLES) for _ in range(parts))


def _names(rng: random.Random, count: int, taken: set[str]) -> list[tuple[str, str]]:
    """Generated first and last names, never equal to a word in ``taken``."""
    names = set()
    while len(names) < count:
        first, last = _word(rng, 2), _word(rng, 3)
        if first not in taken and last not in taken:
            names.add((first.title(), last.title()))
    return sorted(names)


class Generated:
    """The issue #5 vocabulary, articles and rules; the same seed gives the same run."""

    name = "generated"

    def __init__(self, seed: int = SEED):
        self.rng = rng = random.Random(seed)
        self.topics = sorted({_word(rng, 3) for _ in range(10000)})
        # Names are drawn from the same syllables as topic words, but never equal one: a
        # rule on a rare name then hits the articles that mention that name.
        self.names = _names(rng, 20000, set(self.topics))
        self.entities = {
            f"e{i}": Entity(f"e{i}", f"{first} {last}", (last, f"{first[0]}. {last}"))
            for i, (first, last) in enumerate(self.names[:3000])
        }

    def words(self, count: int) -> list[str]:
        """``count`` words of running text around the names and topics."""
        return self.rng.choices(COMMON, k=count)

    def sentence(self, names: Sequence[tuple[str, str]]) -> str:
        rng = self.rng
        words = self.words(rng.randint(10, 18))
        for _ in range(rng.randint(1, 3)):
            words.insert(rng.randrange(len(words)), rng.choice(self.topics))
        if names and rng.random() < 0.3:
            first, last = rng.choice(names)
            words.insert(rng.randrange(len(words)), f"{first} {last}")
        return " ".join(words).capitalize() + "."

    def article(self, number: int) -> Article:
        rng = self.rng
        names = rng.sample(self.names, 5)
        paragraphs, words = [], 0
        while words < 600:
            paragraph = " ".join(self.sentence(names) for _ in range(rng.randint(2, 5)))
            paragraphs.append(paragraph)
            words += len(paragraph.split())
        title = f"{names[0][0]} {names[0][1]} {self.sentence(names)[:-1]}"[:120]
        return Article("wire", f"item{number}", title, "\n".join(paragraphs), None, None, NOW)

    def query(self) -> str:
        rng, topic = self.rng, self.rng.choice
        first, last = rng.choice(self.names)
        kind = rng.random()
        if kind < 0.25:
            return f'"{first} {last}"'
        if kind < 0.40:
            return f"{last} AND ({topic(self.topics)} OR {topic(self.topics)} OR talks)"
        if kind < 0.55:
            return f"{last} NEAR/5 ({topic(self.topics)} OR minister)"
        if kind < 0.65:
            stem = rng.choice(("sanction", "visit", "summit", "minist", "negotiat", "export"))
            return f"{last} AND ({stem}* OR {first[:4]}*)"
        if kind < 0.75:
            entity = rng.choice(list(self.entities))
            return f"entity:{entity} NOT {topic(self.topics)}"
        if kind < 0.85:
            return f'"{first} {last}" NEAR/S ({topic(self.topics)} OR summit*)'
        if kind < 0.95:
            return f"title:{last} OR ({first} ONEAR/2 {last})"
        # Topical rules with no name: three topic words, two of them required.
        return f"{topic(self.topics)} AND ({topic(self.topics)} OR {topic(self.topics)})"


class Realistic(Generated):
    """Names with context groups of common news words, over English drawn by frequency."""

    name = "realistic"

    def __init__(self, seed: int = SEED):
        super().__init__(seed)
        english = [w for w in itertools.islice(wordfreq.iter_wordlist("en"), 40000) if w.isalpha()]
        weights = [wordfreq.word_frequency(w, "en") for w in english]
        self._english = english
        self._weights = list(itertools.accumulate(weights))
        # Topical rules need one less common real word: ranks 15,000 to 40,000.
        self.topics = english[15000:]
        self.names = _names(self.rng, 20000, set(english))
        self.entities = {
            f"e{i}": Entity(f"e{i}", f"{first} {last}", (last, f"{first[0]}. {last}"))
            for i, (first, last) in enumerate(self.names[:3000])
        }

    def words(self, count: int) -> list[str]:
        rng = self.rng
        words = rng.choices(self._english, cum_weights=self._weights, k=count)
        for i in range(count):
            if rng.random() < 0.05:
                words[i] = rng.choice(NEWS)
        return words

    def sentence(self, names: Sequence[tuple[str, str]]) -> str:
        rng = self.rng
        words = self.words(rng.randint(12, 22))
        if names and rng.random() < 0.3:
            first, last = rng.choice(names)
            words.insert(rng.randrange(len(words)), f"{first} {last}")
        return " ".join(words).capitalize() + "."

    def context(self, size: int) -> str:
        """An OR-group of common news words and, now and then, a wildcard on a common stem."""
        rng = self.rng
        words = rng.sample(NEWS, size)
        if rng.random() < 0.4:
            words[-1] = rng.choice(STEMS) + "*"
        return "(" + " OR ".join(words) + ")"

    def query(self) -> str:
        rng = self.rng
        first, last = rng.choice(self.names)
        kind = rng.random()
        if kind < 0.20:
            return f'"{first} {last}" AND {self.context(3)}'
        if kind < 0.35:
            return f"{self.context(4)} AND {last}"
        if kind < 0.50:
            return f"{last} NEAR/10 {self.context(2)}"
        if kind < 0.62:
            entity = rng.choice(list(self.entities))
            return f"entity:{entity} AND {self.context(3)}"
        if kind < 0.72:
            return f'{self.context(2)} NEAR/S "{first} {last}"'
        if kind < 0.80:
            return f"{last} AND {rng.choice(NEWS)} AND {rng.choice(STEMS)}*"
        if kind < 0.90:
            return f'title:{last} OR ("{first} {last}" AND {self.context(2)})'
        # Topical: one less common real word and a context group.
        return f"{rng.choice(self.topics)} AND {self.context(3)}"


def rules_of(rule_set: Generated, count: int) -> tuple[list[Rule], dict[str, Query]]:
    """``count`` rules of ``rule_set``, parsed with word forms on."""
    rules, queries = [], {}
    for i in range(count):
        text = rule_set.query()
        rules.append(Rule(f"r{i}", f"rule {i}", text, ()))
        queries[f"r{i}"] = parse_query(text, rule_set.entities, forms="inflected")
        if i % 10_000 == 9_999:
            progress(f"{rule_set.name}: parsed {i + 1:,} rules")
    return rules, queries


# --- the keyword-filter baseline -------------------------------------------------------


def _term_regex(node: Term | Phrase) -> re.Pattern[str]:
    if isinstance(node, Term):
        if node.forms is not None:
            body = "(?:" + "|".join(map(re.escape, sorted(node.forms.words))) + r")\b"
        else:
            body = re.escape(node.word) + (r"\w*" if node.prefix else r"\b")
        flags = 0 if node.case_sensitive else re.IGNORECASE
    else:
        body = r"\W+".join(f"(?:{_term_regex(t).pattern[2:]})" for t in node.words)
        flags = re.IGNORECASE
    return re.compile(r"\b" + body, flags)


Check = Callable[[Article], bool]


def keyword_filter(node: Node) -> Check:
    """A rule as a keyword filter: one compiled regex per term, then the boolean."""
    if isinstance(node, Term | Phrase):
        pattern = _term_regex(node)
        return lambda a: pattern.search(a.text) is not None
    if isinstance(node, EntityRef):
        names = [_term_regex(name) for name in node.names]
        return lambda a: any(p.search(a.text) for p in names)
    if isinstance(node, And | Or):
        parts = [keyword_filter(child) for child in node.children]
        if isinstance(node, And):
            return lambda a: all(p(a) for p in parts)
        return lambda a: any(p(a) for p in parts)
    if isinstance(node, Near):  # keyword filters know no proximity: both must occur
        left, right = keyword_filter(node.left), keyword_filter(node.right)
        return lambda a: left(a) and right(a)
    if isinstance(node, Not):
        child = keyword_filter(node.child)
        return lambda a: not child(a)
    if isinstance(node, Title):
        inner = keyword_filter(node.child)
        return lambda a: inner(Article(a.source, a.item_key, a.title, "", None, None, NOW))
    assert isinstance(node, Source)
    name = node.name.casefold()
    return lambda a: a.source.casefold() == name


# --- measuring ------------------------------------------------------------------------


def progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def rate(
    articles: Sequence[Article], work: Callable[[Article], object], passes: int = 1,
    budget: float = float("inf"),
) -> float:  # fmt: skip
    """Articles per second for ``work`` over ``articles``: the best of ``passes`` passes,
    or of fewer once they have taken ``budget`` seconds."""
    best, spent = float("inf"), 0.0
    for _ in range(passes):
        gc.collect()
        started = time.process_time()
        for article in articles:
            work(article)
        took = time.process_time() - started
        best, spent = min(best, took), spent + took
        if spent > budget:
            break
    return len(articles) / best


def peak_rss_mib() -> float:
    # ru_maxrss is KiB on Linux, bytes on macOS.
    scale = 1 if sys.platform == "darwin" else 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale / (1 << 20)


Row = tuple[str, int, float, float, float, float, float, float, bool]


def measure(rule_set: Generated) -> list[Row]:
    """Each row of one rule set: name, rules, build s, floor art/s, index art/s,
    hits/article, floor cost ratio, keyword-filter art/s and whether that was
    extrapolated."""
    progress(f"{rule_set.name}: making {ARTICLES + SAMPLE:,} articles")
    articles = [rule_set.article(i) for i in range(ARTICLES)]
    others = (rule_set.article(ARTICLES + i) for i in range(SAMPLE))
    sample = document_frequencies((a.title, a.body) for a in others)
    rules, queries = rules_of(rule_set, RULE_COUNTS[-1])
    rows: list[Row] = []
    keyword = 0.0
    for count in RULE_COUNTS:
        chosen = rules[:count]
        gc.collect()
        started = time.process_time()
        matcher = Matcher(chosen, queries, documents=sample)
        build = time.process_time() - started
        progress(f"{rule_set.name}: {count:,} rules built in {build:.2f} s, matching")
        hits = sum(len(matcher.match(a)) for a in articles)  # also warms the caches
        # The floor beside each row: the machine's speed wanders within a run too.
        floor = rate(articles, TokenizedText.from_article, passes=3)
        indexed = rate(articles, matcher.match, passes=3, budget=BUDGET)
        del matcher
        extrapolated = count > 10_000
        if extrapolated:
            keyword = keyword * 10_000 / count
        else:
            filters = [keyword_filter(queries[r.id].root) for r in chosen]
            subset = articles[:KEYWORD_ARTICLES]
            keyword = rate(subset, lambda a, f=filters: [check(a) for check in f])
            del filters
        floor_ratio = floor / indexed
        rows.append((rule_set.name, count, build, floor, indexed, hits / ARTICLES,
                     floor_ratio, keyword, extrapolated))  # fmt: skip
    return rows


def measure_set(name: str) -> tuple[list[Row], float, float]:
    """One rule set's rows, the peak RSS of the process that measured them, and the CPU
    seconds its first Matcher spent loading wordfreq's English table (outside the rows)."""
    rule_set = Generated() if name == "generated" else Realistic()
    started = time.process_time()
    word_table("en")
    loading = time.process_time() - started
    return measure(rule_set), peak_rss_mib(), loading


def main() -> None:
    rows: list[Row] = []
    rss: dict[str, float] = {}
    loading = 0.0
    # Each set in a process of its own, forked from this small one: a set's peak RSS is
    # then its own, not the first set's freed memory that the allocator kept.
    with multiprocessing.get_context("fork").Pool(1, maxtasksperchild=1) as pool:
        for name in ("generated", "realistic"):
            found, rss[name], loading = pool.apply(measure_set, (name,))
            rows += found
    print()
    header = ("set", "rules", "build s", "floor art/s", "index art/s", "hits/art", "x floor",
              "keyword art/s", "x keyword")  # fmt: skip
    print(" ".join(f"{h:>10}" for h in header))
    for name, count, build, floor, indexed, hits, floor_ratio, keyword, guessed in rows:
        cells = (name, f"{count:,}", f"{build:.2f}", f"{floor:,.0f}", f"{indexed:,.0f}",
                 f"{hits:.2f}", f"{floor_ratio:.2f}x", f"{keyword:,.3f}{'*' if guessed else ' '}",
                 f"{indexed / keyword:,.0f}x")  # fmt: skip
        print(" ".join(f"{c:>10}" for c in cells))
    print(
        f"\n{ARTICLES:,} articles a set; floor: tokenising alone, beside each row; keyword"
        f" filter on {KEYWORD_ARTICLES}\narticles, * = the 10,000 rules' rate / 10 (not built"
        f" at 100,000)\nwordfreq's English table loads once, before the rows: {loading:.2f} s"
        f" of CPU\npeak RSS of each set's process (its 100,000 rules):"
        f" {', '.join(f'{n} {r:,.0f} MiB' for n, r in rss.items())}\n"
    )
    goals = []
    for name, count, build, _, indexed, _, floor_ratio, keyword, _ in rows:
        if count == 10_000:
            goals.append((f"{name}: <= 5x the floor at 10,000 rules", f"{floor_ratio:.2f}x",
                          floor_ratio <= 5))  # fmt: skip
            goals.append((f"{name}: >= 1,000x the keyword filter at 10,000",
                          f"{indexed / keyword:,.0f}x", indexed / keyword >= 1000))  # fmt: skip
        if count == 100_000:
            goals.append((f"{name}: <= 15x the floor at 100,000 rules", f"{floor_ratio:.2f}x",
                          floor_ratio <= 15))  # fmt: skip
            goals.append((f"{name}: build of 100,000 rules <= 5 s", f"{build:.2f} s",
                          build <= 5))  # fmt: skip
    for name, peak in rss.items():
        goals.append((f"{name}: peak RSS <= 1 GiB", f"{peak:,.0f} MiB", peak <= 1024))
    for goal, figure, met in goals:
        print(f"  {'met   ' if met else 'MISSED'}  {goal:<50} {figure}")


if __name__ == "__main__":
    main()
