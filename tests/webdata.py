"""Fixture data for the dashboard tests: a real config and a real SQLite store,
written through ``Store.save_poll`` as the daemon writes them."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import update
from sqlmodel import select

from monitor.config import Config, load_config
from monitor.domain import Article, Hit, Match, PollOutcome, Rule
from monitor.store import Store
from monitor.store.tables import ArticleRow, HitRow

NOW = datetime(2026, 5, 10, 12, 0, tzinfo=UTC)
SCRIPT_TITLE = "<script>alert('title')</script> Sanctions panel & report"
OLD_SANCTIONS_HITS = 60  # more than one page (50)

CONFIG = """
database: sqlite:///monitor.db
watchlists: [watchlists/*.yaml]
sources:
  feeds:
    - {name: yonhap, url: "https://example.org/nk.xml"}
  folders:
    - {name: seeds, path: seeds}
sinks:
  - {name: console, type: console}
  - {name: ops, type: webhook, url: "http://127.0.0.1:9/hook", allow_private_networks: true}
defaults:
  notify: [console, ops]
http:
  listen: "${LISTEN:-127.0.0.1:0}"
  token: "${TOKEN:-}"
"""

WATCHLIST = """
rules:
  - id: nk-russia-summit
    title: North Korea–Russia summit
    query: '"North Korea" AND (Russia OR Putin) AND summit'
    tags: [korea, diplomacy]
    severity: high
  - id: un-sanctions
    title: UN sanctions panel report
    query: sanctions
    tags: [un]
    severity: medium
  - id: matsegora
    title: Ambassador Matsegora
    query: Matsegora
    tags: [korea, people]
    severity: critical
"""


@dataclass
class WebData:
    config: Config
    store: Store
    summit_hit: int  # the hit of the summit article in the seeds folder
    script_hit: int  # the hit whose article title carries <script>


def write_config(root: Path, env: dict[str, str] | None = None) -> Config:
    (root / "watchlists").mkdir(parents=True, exist_ok=True)
    (root / "seeds").mkdir(exist_ok=True)
    (root / "monitor.yaml").write_text(CONFIG)
    (root / "watchlists" / "korea.yaml").write_text(WATCHLIST)
    return load_config(root / "monitor.yaml", env or {})


def _matches(text: str, *words: str) -> tuple[Match, ...]:
    found = []
    for word in words:
        at = text.find(word)
        while at >= 0:
            found.append(Match(at, at + len(word), word))
            at = text.find(word, at + 1)
    return tuple(sorted(found, key=lambda m: m.start))


def _article(source: str, key: str, title: str, body: str, at: datetime) -> Article:
    return Article(source, key, title, body, f"https://example.org/{key}", None, at)


def _save(store: Store, config: Config, source: str, article: Article, rule_id: str,
          *words: str, at: datetime) -> None:  # fmt: skip
    rule: Rule = next(r for r in config.rules if r.id == rule_id)
    hit = Hit(rule, _matches(article.text, *words))
    store.save_poll(PollOutcome(source, ((article, (hit,)),)), at, lambda h: h.rule.notify)


def build(root: Path, env: dict[str, str] | None = None, now: datetime = NOW) -> WebData:
    """Three rules, hits over two weeks, a story carried by two outlets, a failing source
    and a failed delivery; an article whose title and body carry markup."""
    config = write_config(root, env)
    store = Store(config.database_url)
    store.sync_sources([("seeds", "folder", "seeds"), ("yonhap", "feed", "x")], now)
    for i in range(OLD_SANCTIONS_HITS):
        at = now - timedelta(days=3, minutes=i)
        article = _article("yonhap", f"old{i}", f"Sanctions bulletin {i}",
                           "The UN sanctions committee met. Nothing else.", at)  # fmt: skip
        _save(store, config, "yonhap", article, "un-sanctions", "sanctions", at=at)
    summit_body = ("Leaders met in Vladivostok on Tuesday.\nNorth Korea and Russia agreed "
                   "to hold a summit in Pyongyang. Putin is expected to attend.")  # fmt: skip
    at = now - timedelta(hours=2)
    summit = _article("seeds", "summit", "North Korea–Russia summit announced", summit_body, at)
    _save(store, config, "seeds", summit, "nk-russia-summit", "North Korea", "Russia", "summit",
          at=at)  # fmt: skip
    copy = _article("yonhap", "summit-copy", "N. Korea, Russia to hold summit", summit_body,
                    at + timedelta(minutes=5))  # fmt: skip
    store.save_poll(PollOutcome("yonhap", ((copy, ()),)), at + timedelta(minutes=5), lambda h: ())
    at = now - timedelta(hours=1)
    hostile = _article(
        "seeds",
        "hostile",
        SCRIPT_TITLE,
        'The sanctions panel <img src=x onerror="alert(1)"> published.',
        at,
    )
    _save(store, config, "seeds", hostile, "un-sanctions", "sanctions", at=at)
    matsegora = _article(
        "seeds",
        "matsegora",
        "Ambassador Matsegora speaks",
        "Matsegora said relations grow.",
        now - timedelta(minutes=30),
    )
    _save(store, config, "seeds", matsegora, "matsegora", "Matsegora",
          at=now - timedelta(minutes=30))  # fmt: skip
    with store.writing() as s:  # the two summit articles are one story (as MinHash would find)
        story = s.exec(select_story("summit")).one()
        s.exec(update(ArticleRow).where(ArticleRow.item_key == "summit-copy")  # type: ignore
               .values(story_id=story))  # fmt: skip
    store.save_poll(
        PollOutcome(
            "yonhap",
            error="http_status: 503 Service Unavailable",
            status="failing",
            consecutive_errors=3,
            next_poll_at=now + timedelta(minutes=40),
        ),
        now,
        lambda h: (),
    )
    _fail_one_delivery(store, now)
    ids = _hit_ids(store)
    return WebData(config, store, ids["summit"], ids["hostile"])


def select_story(item_key: str):  # type: ignore[no-untyped-def]
    return select(ArticleRow.story_id).where(ArticleRow.item_key == item_key)


def _hit_ids(store: Store) -> dict[str, int]:
    """Article item key -> its hit id."""
    with store.reading() as s:
        rows = s.exec(
            select(ArticleRow.item_key, HitRow.id).join(HitRow, HitRow.article_id == ArticleRow.id)
        )  # type: ignore[arg-type]
        return {key: hit_id for key, hit_id in rows}


def _fail_one_delivery(store: Store, now: datetime) -> None:
    """The ops webhook answered 500 twice for the summit hit, then the delivery failed."""
    alert = next(a for a in store.due_alerts(now, 500) if a.sink == "ops" and
                 a.title.startswith("North Korea"))  # fmt: skip
    store.record_attempt(alert, now - timedelta(minutes=50), status="pending", status_code=500,
                         error="HTTP 500 from receiver", next_attempt_at=now)  # fmt: skip
    store.record_attempt(alert, now - timedelta(minutes=20), status="failed", status_code=500,
                         error="HTTP 500 <b>boom</b>")  # fmt: skip
