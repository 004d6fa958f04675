"""RELIABILITY.md 3(a), feed content rows F1-F27, served as bytes to the real pipeline.

Each hostile document is one feed of a real pipeline beside a healthy
neighbour (tests/reliability/hostile.py). The parse-heavy rows (F1, F2,
F10-F13) run in a forked child under RLIMIT_AS, where the parse workers'
peak RSS is read once they are reaped; the same rows are fed to the parse
workers directly in tests/test_parse.py, which carries the same case ids.
The feedparser corpus (``../shared/corpus/feedparser``), when present, is
F6 and the report's corpus figure.
"""

from __future__ import annotations

import importlib.util
import json
import re
import sys
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from feedserver import FeedServer, item, rss
from hostile import (
    FeedPair,
    Poll,
    assert_feed_error,
    assert_neighbour_unharmed,
    baseline_figures,
    poll_isolated,
    poll_once,
    record_poll,
    record_sentinel_check,
)
from hostile_routes import (
    billion_laughs,
    deep_nesting,
    feed_route,
    huge_fields,
    many_items,
    quadratic_blowup,
    redos_author,
)
from hostile_rows import row, row_param
from sandbox import ChildFigures
from sqlalchemy import text

from casebook import figure, measured
from conftest import ROOT
from flows import Clock
from monitor.config import load_config
from monitor.pipeline import Pipeline
from monitor.sinks.chat import safe_link
from monitor.sinks.console import ConsoleSink
from monitor.sources.normalise import MAX_BODY, MAX_TITLE
from monitor.store import Store
from receivers import Receiver, running

pytestmark = pytest.mark.reliability

PARSE_DEADLINE_S = 2.0  # hostile.FETCH parse_timeout
MARGIN_S = 2.0
CORPUS = ROOT.parent / "shared" / "corpus" / "feedparser"


PARSE_MEMORY_MIB = 512  # fetch.parse_memory, the default: the workers' RLIMIT_AS


def workers_extra(figures: ChildFigures) -> float:
    """The parse workers' peak RSS over that of a plain poll's workers, in MiB."""
    return max(0.0, figures.workers_peak_rss_mib - baseline_figures().workers_peak_rss_mib)


def record_worker_rss(poll: Poll, figures: ChildFigures, deadline_s: float) -> None:
    """The parse rows' figures: wall time against the deadline, and the parse workers' peak
    RSS against their address-space cap (the daemon's own growth is in the notes)."""
    record_poll(poll, figures, figures.workers_peak_rss_mib, deadline_s=deadline_s,
                rss_cap_mib=PARSE_MEMORY_MIB)  # fmt: skip
    measured(rss_measure="parse workers' peak RSS (cap: fetch.parse_memory, their RLIMIT_AS)")


# --- entities, ReDoS, nesting, size: the parse worker's bounds (sandboxed) ------------------


@row("F1")
@pytest.mark.parametrize("layout", ["one-line", "many-lines"])
def test_f1_billion_laughs_is_refused_before_parsing(
    tmp_path: Path, server: FeedServer, layout: str
) -> None:
    """F1: nested entities are entity_expansion_refused before feedparser sees them, in well
    under the parse deadline, the worker growing by less than 64 MiB."""
    server.routes["/lol"] = feed_route(billion_laughs(one_line=layout == "one-line"))
    poll, figures = poll_isolated(tmp_path, server, server.url("/lol"))
    assert_feed_error(poll, "entity_expansion_refused")
    assert poll.hostile.wall_s < PARSE_DEADLINE_S  # refused, not killed at the deadline
    extra = workers_extra(figures)
    assert extra < 64
    record_worker_rss(poll, figures, deadline_s=1.0)
    measured(rss_over_plain_poll_mib=round(extra, 1), rss_over_plain_poll_cap_mib=64)


@row("F2")
def test_f2_quadratic_blowup_never_stores_a_huge_field(tmp_path: Path, server: FeedServer) -> None:
    """F2: a 20 KB entity referenced 20,000 times is refused (or the worker dies at its memory
    cap): a feed error, and no field longer than the caps is stored."""
    server.routes["/quad"] = feed_route(quadratic_blowup())
    poll, figures = poll_isolated(tmp_path, server, server.url("/quad"))
    assert_feed_error(poll, ("entity_expansion_refused", "parse_memory_exceeded",
                             "parse_worker_died"))  # fmt: skip
    assert poll.stored["max_title"] <= MAX_TITLE and poll.stored["max_body"] <= MAX_BODY
    record_worker_rss(poll, figures, deadline_s=PARSE_DEADLINE_S)


@row("F10")
def test_f10_redos_author_is_killed_at_the_parse_deadline(
    tmp_path: Path, server: FeedServer
) -> None:
    """F10: the 80 KB ReDoS author is parse_timeout at the 2 s deadline; the neighbour's poll
    finishes first; no worker or descriptor is left behind."""
    server.routes["/redos"] = feed_route(redos_author())
    poll, figures = poll_isolated(tmp_path, server, server.url("/redos"))
    assert_feed_error(poll, "parse_timeout")
    assert PARSE_DEADLINE_S <= poll.hostile.wall_s <= PARSE_DEADLINE_S + MARGIN_S
    assert poll.healthy.wall_s < poll.hostile.wall_s  # the other feed kept its time
    record_worker_rss(poll, figures, deadline_s=PARSE_DEADLINE_S)


@row("F11")
def test_f11_deep_nesting_is_bounded(tmp_path: Path, server: FeedServer) -> None:
    """F11: 100,000 nested elements and 200,000 nested <div> parse or fail cleanly within the
    deadline; no RecursionError escapes the worker."""
    server.routes["/deep"] = feed_route(deep_nesting())
    poll, figures = poll_isolated(tmp_path, server, server.url("/deep"))
    if poll.hostile.error is not None:
        assert_feed_error(poll, ("parse_error", "parse_timeout"))
    else:
        assert_neighbour_unharmed(poll)
    assert poll.hostile.wall_s <= PARSE_DEADLINE_S + MARGIN_S
    record_worker_rss(poll, figures, deadline_s=PARSE_DEADLINE_S)
    measured(outcome=poll.hostile.error or f"parsed, {poll.hostile.new} stored")


BIG = {"max_bytes": "32MiB", "parse_timeout": "10s"}  # room for the 15 MB and 10 MB feeds


@row("F12")
def test_f12_huge_fields_are_stored_at_the_caps(tmp_path: Path, server: FeedServer) -> None:
    """F12: a 5 MB title and a 10 MB description are stored cut to 1,000 characters and
    64 KiB; the parse worker stays inside its memory cap."""
    server.routes["/huge"] = feed_route(huge_fields())
    poll, figures = poll_isolated(tmp_path, server, server.url("/huge"), fetch=BIG)
    assert poll.hostile.error is None and poll.hostile.new == 1
    assert poll.stored["max_title"] == MAX_TITLE and poll.stored["max_body"] == MAX_BODY
    assert_neighbour_unharmed(poll)
    record_worker_rss(poll, figures, deadline_s=10.0)


@row("F13")
@pytest.mark.slow
def test_f13_only_the_first_thousand_items_are_processed(
    tmp_path: Path, server: FeedServer
) -> None:
    """F13: of 50,000 items in one feed only the first 1,000 (feed order: newest) are stored."""
    server.routes["/many"] = feed_route(many_items())
    # feedparser itself takes about 12 s over 50,000 items here: a deadline that lets it.
    fetch = {**BIG, "parse_timeout": "40s"}
    poll, figures = poll_isolated(tmp_path, server, server.url("/many"), fetch=fetch)
    assert poll.hostile.error is None
    assert poll.hostile.new == 1000 and poll.stored["articles"]["hostile"] == 1000
    assert_neighbour_unharmed(poll)
    record_worker_rss(poll, figures, deadline_s=40.0)


# --- what may never come out: sentinel files, external DTDs -------------------------------


@row("F3")
def test_f3_external_entities_never_bring_a_file_in(tmp_path: Path, server: FeedServer) -> None:
    """F3: a SYSTEM entity and a parameter entity naming a sentinel file: its content is in no
    stored field, alert or log line (the feed is refused, or parsed without it)."""
    sentinel = tmp_path / "sentinel.txt"
    sentinel.write_text("SENTINEL-F3-91c2")
    doctype = (f'<!DOCTYPE rss [<!ENTITY x SYSTEM "file://{sentinel}">'
               f'<!ENTITY % p SYSTEM "file://{sentinel}">%p;]>')  # fmt: skip
    body = rss([item(1, title="Zanzibar &x; news", description="&x;")], extra=doctype)
    server.routes["/xxe"] = feed_route(body)
    poll = poll_once(tmp_path, server, server.url("/xxe"))
    assert_neighbour_unharmed(poll)
    leaks = sum("SENTINEL-F3" in t for t in (poll.stored["text"], poll.alerts, *poll.logs))
    record_sentinel_check(leaks)
    assert leaks == 0
    measured(outcome=poll.hostile.error or f"parsed, {poll.hostile.new} stored")


# --- text the parser lets through ---------------------------------------------------------


@row("F5")
def test_f5_bad_bytes_and_a_wrong_label_store_valid_text(
    tmp_path: Path, server: FeedServer
) -> None:
    """F5: invalid UTF-8 bytes under a us-ascii label are stored as valid text; the encoding
    override is a logged warning, not a feed error."""
    body = rss([item(1, title="Café Zanzibar")]).replace(b"utf-8", b"us-ascii") + b"\xff\xfe"
    server.routes["/mislabelled"] = feed_route(body)
    poll = poll_once(tmp_path, server, server.url("/mislabelled"))
    assert poll.hostile.error is None and poll.hostile.errors == 0 and poll.hostile.new == 1
    (title,) = poll.stored["titles"]
    title.encode("utf-8")  # raises on a lone surrogate
    assert "Zanzibar" in title
    warnings = [line for line in poll.logs if "feed warning source=hostile" in line]
    assert len(warnings) == 1 and "WARNING" in warnings[0]


TABLE = [
    *(row_param("F7", rss([item(1, title=f"Zanzibar {ref} ref")]), id=f"F7-{ref}")
      for ref in ("&#x110000;", "&#xFFFFFFFF;", "&#xD800;")),
    row_param("F8", rss([item(1, title="&path;")],
                        extra='<!DOCTYPE rss [<!ENTITY path "C:\\data">]>')),
    row_param("F9", rss([item(1)]).replace(b"</item>", (
        b'<georss:where xmlns:georss="http://www.georss.org/georss" '
        b'xmlns:gml="http://www.opengis.net/gml"><gml:Point srsName="EPSG:abc">'
        b"<gml:pos>1 2</gml:pos></gml:Point></georss:where></item>"))),
    row_param("F27", b'{"version": "https://jsonfeed.org/version/1.1", "items": [{"id": "1", "tit',
              id="F27-truncated-json"),
]  # fmt: skip


@pytest.mark.parametrize("body", TABLE)
def test_parser_crashers_are_contained(tmp_path: Path, server: FeedServer, body: bytes) -> None:
    """Documents that make feedparser raise (F7-F9) or give nothing (F27) are the feed's error or
    are parsed to valid text; the daemon's poll returns and the neighbour is unharmed."""
    server.routes["/crasher"] = feed_route(body, "application/feed+json" if b"{" in body[:1]
                                           else "application/rss+xml")  # fmt: skip
    poll = poll_once(tmp_path, server, server.url("/crasher"))
    if poll.hostile.error is not None:
        assert_feed_error(poll, ("parse_error", "not_a_feed", "entity_expansion_refused"))
    else:
        assert_neighbour_unharmed(poll)
        for title in poll.stored["titles"]:
            title.encode("utf-8")
    measured(outcome=poll.hostile.error or f"parsed, {poll.hostile.new} stored")


@row("F19")
def test_f19_bad_dates_never_sort_first_forever(tmp_path: Path, server: FeedServer) -> None:
    """F19: year 9999, 30 Feb, garbage and a +9999 zone are stored at the fetch time; 1970 is
    kept (and so shows as old next to fetched_at); nothing sorts newest forever."""
    dates = ["Fri, 31 Dec 9999 23:59:59 GMT", "Mon, 30 Feb 2026 10:00:00 GMT", "garbage",
             "Thu, 01 Jan 1970 00:00:00 GMT", "Sun, 01 Mar 2026 10:00:00 +9999"]  # fmt: skip
    items = [item(n, title=f"Zanzibar dated {n}", pubDate=d) for n, d in enumerate(dates)]
    server.routes["/dates"] = feed_route(rss(items))
    pair = FeedPair(tmp_path, server, server.url("/dates"))
    try:
        poll = pair.poll()
        with pair.store.reading() as s:
            rows = s.execute(text(
                "SELECT title, published_at, fetched_at FROM articles "
                "WHERE title LIKE 'Zanzibar dated%' ORDER BY published_at DESC"
            )).all()  # fmt: skip
    finally:
        pair.close()
    assert poll.hostile.new == 5 and len(rows) == 5
    published = {title: _utc(at) for title, at, _ in rows}
    fetched = _utc(rows[0][2])
    assert all(at <= fetched + timedelta(days=1) for at in published.values())
    for n in (0, 1, 2):
        assert published[f"Zanzibar dated {n}"] == fetched
    assert published["Zanzibar dated 3"] == datetime(1970, 1, 1, tzinfo=UTC)
    assert rows[-1][0] == "Zanzibar dated 3"  # the oldest, last: it never floats to the top


def _utc(value: Any) -> datetime:
    when = value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
    return when if when.tzinfo else when.replace(tzinfo=UTC)


# --- NUL and long GUIDs on PostgreSQL -----------------------------------------------------


@pytest.fixture
def pg_pair(tmp_path: Path, server: FeedServer, pg_url: str) -> Iterator[FeedPair]:
    """A FeedPair on a fresh PostgreSQL database (skipped, with the reason, without one)."""
    nasty = [
        item(1, title="Zanzibar a&#0;b\x01c", description="x\x00y &#0; z"),
        item(2, guid="g" * 100_000, title="Zanzibar long guid"),
        item(3, guid="a&#0;b\x00c", title="Zanzibar nul guid"),
    ]
    server.routes["/nul"] = feed_route(rss(nasty))
    pair = FeedPair(tmp_path, server, server.url("/nul"), database_url=pg_url)
    yield pair
    pair.close()


@row("F18")
def test_f18_nul_is_stripped_and_postgresql_takes_the_rows(pg_pair: FeedPair) -> None:
    """F18: NUL (&#0; and raw) and C0 controls are stripped, so PostgreSQL stores the items."""
    poll = pg_pair.poll()
    assert poll.hostile.error is None and poll.hostile.new == 3
    assert "\x00" not in poll.stored["text"] and "\x01" not in poll.stored["text"]
    assert_neighbour_unharmed(poll)


@row("F17")
def test_f17_long_and_nul_guids_become_sha256_keys_on_postgresql(pg_pair: FeedPair) -> None:
    """F17: a 100 KB GUID and a GUID with NUL are stored on PostgreSQL under 64-hex keys."""
    assert pg_pair.poll().hostile.new == 3
    with pg_pair.store.reading() as s:
        keys = s.execute(text("SELECT item_key FROM seen_items")).scalars().all()
    assert len(keys) >= 4 and all(re.fullmatch(r"[0-9a-f]{64}", k) for k in keys)


# --- retention tombstones ------------------------------------------------------------------


@row("F20")
def test_f20_items_past_retention_never_alert_again(tmp_path: Path, server: FeedServer) -> None:
    """F20: 91 days on, the retention chore prunes the unalerted article (an alerted one stays,
    its hit refers to it); when the feed emits both again, the tombstones stop them: no new
    row and no second alert, even with a rule that now matches the pruned one."""
    items = [item(1, title="Zanzibar once"), item(2, title="Harbour news")]
    server.routes["/old"] = feed_route(rss(items))
    pair = FeedPair(tmp_path, server, server.url("/old"))
    try:
        assert pair.poll().hostile.hits == 1
        pair.clock.now += timedelta(days=91)
        pair.pipeline.run_chores()
        assert pair.stored()["titles"] == ["Zanzibar once"]  # "Harbour news" was pruned
        rules = "rules:\n  - {id: zanzibar, query: Zanzibar}\n  - {id: harbour, query: Harbour}\n"
        (tmp_path / "watchlists" / "w.yaml").write_text(rules)
        pair.pipeline.reload(load_config(tmp_path / "monitor.yaml", env={}))
        again = pair.poll()
    finally:
        pair.close()
    assert (again.hostile.new, again.hostile.hits) == (0, 0)
    assert "Zanzibar once" not in again.alerts and "Harbour news" not in again.alerts


# --- what reaches Slack and Discord (F21-F26) -------------------------------------------------

HOSTILE_ITEMS = {
    "F21": item(21, title="Zanzibar summary markup", description=(
        "<![CDATA[<p>Para<script>alert(1)</script></p><img src=x onerror=alert(2)>"
        '<a href="javascript:alert(3)">link</a><iframe src="x"></iframe>'
        '<div style="width: expression(alert(4))">two</div>]]>')),
    "F22": item(22, title="Zanzibar <!everyone> @channel <@U123> "
                "<https://evil.example|yourbank.com> &amp; co".replace("<", "&lt;")),
    "F23": item(23, title="Zanzibar script link", link="javascript:alert(1)"),
    "F24": item(24, title="Zanzibar pipe link", link="https://news.example/a|b&gt;c"),
    "F25": item(25, title="Zanzibar [bank](https://evil) ||spoiler|| # Heading @everyone"),
    "F26": item(26, title="Zanzibar quiet day&#10;2026-01-01 ERROR forged\u202eevil"),
}  # fmt: skip
# Our own link syntax in a Slack text: <http(s)://...|
OWN_SLACK_LINK = re.compile(r"<https?://[^|<>\s]+\|")


_chat_run: dict[str, Any] = {}


@pytest.fixture
def chat_payloads(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """One pipeline whose feed carries every F21-F26 item, delivered to loopback Slack and
    Discord receivers and the console; the payloads, alerts and logs, for the tests below.
    Run once, by the first test that asks, with that test's network guard on."""
    if not _chat_run:
        _chat_run.update(_deliver_chat_items(tmp_path_factory.mktemp("chat")))
    return _chat_run


def _deliver_chat_items(root: Path) -> dict[str, Any]:
    server = FeedServer().start()
    bodies = [{**v, "description": v.get("description", "") or f"Story {k} body text."}
              for k, v in HOSTILE_ITEMS.items()]  # fmt: skip
    for n, body in enumerate(bodies):  # distinct text, so no two are one story
        body["description"] += " " + " ".join(f"w{n}x{k}" for k in range(40))
    server.routes["/chat"] = feed_route(rss(bodies))
    with running() as slack, running() as discord:
        sinks = "".join(
            f"  - {{name: {kind}, type: {kind}, url: '{r.url()}', allow_private_networks: true, "
            "min_interval: 0.01s}\n"
            for kind, r in (("slack", slack), ("discord", discord))
        )
        pair = FeedPair(root, server, server.url("/chat"), sinks=sinks)
        try:
            poll = pair.poll()
        finally:
            pair.close()
            server.stop()
        return {"poll": poll, "slack": _bodies(slack), "discord": _bodies(discord)}


def _bodies(receiver: Receiver) -> list[dict[str, Any]]:
    return [json.loads(r.body) for r in receiver.requests]


def _unescaped_slack(text: str) -> int:
    """Raw Slack control sequences left in a payload's text once our own links are taken out."""
    untrusted = OWN_SLACK_LINK.sub("", text)
    return len(re.findall(r"<[!@#]|<https?:|<javascript:", untrusted))


def _slack_text(payloads: list[dict[str, Any]]) -> str:
    return "\n".join(json.dumps(p, ensure_ascii=False) for p in payloads)


def test_chat_payload_scan_figures(chat_payloads: dict[str, Any]) -> None:
    """3(c) 8: every Slack payload is free of raw control sequences and every Discord payload
    carries allowed_mentions.parse == [] (the scan's counts are report figures)."""
    slack, discord = chat_payloads["slack"], chat_payloads["discord"]
    expected = len(HOSTILE_ITEMS) + 1  # with the healthy neighbour's alert
    assert len(slack) == expected and len(discord) == expected
    unescaped = sum(_unescaped_slack(p["text"]) for p in slack)
    no_guard = sum(p.get("allowed_mentions") != {"parse": []} for p in discord)
    figure("safety", "Slack payloads scanned", len(slack))
    figure("safety", "Slack control sequences unescaped", unescaped)
    figure("safety", "Discord payloads scanned", len(discord))
    figure("safety", "Discord payloads without allowed_mentions.parse == []", no_guard)
    assert unescaped == 0 and no_guard == 0
    assert all(len(p["content"]) <= 2000 for p in discord)


def _about(payloads: list[dict[str, Any]], key: str, word: str) -> str:
    (found,) = [p[key] for p in payloads if word in p[key]]
    return str(found)


@row("F21")
def test_f21_markup_in_a_summary_reaches_no_alert(chat_payloads: dict[str, Any]) -> None:
    """F21: script, handlers, javascript: href, iframe and expression() leave no tag or script
    in the Slack, Discord or console alert."""
    for key, payloads in (("text", chat_payloads["slack"]), ("content", chat_payloads["discord"])):
        alert = _about(payloads, key, "markup")
        assert "alert(" not in alert and "<script" not in alert and "onerror" not in alert
        assert "<iframe" not in alert and "expression(" not in alert
    assert "alert(" not in chat_payloads["poll"].alerts


@row("F22")
def test_f22_mentions_and_spoofed_links_are_escaped(chat_payloads: dict[str, Any]) -> None:
    """F22: Slack gets &lt;!everyone&gt;, &lt;https…&gt; and &amp;; Discord gets the title with
    allowed_mentions.parse == [] and nothing that pings."""
    slack = _about(chat_payloads["slack"], "text", "@channel")
    assert "&lt;@U123&gt;" in slack and "&amp; co" in slack and _unescaped_slack(slack) == 0
    # A text title reaches the sinks as written (normalise strips tags only from a title
    # the feed marks as markup), so every piece arrives whole, and escaped.
    assert "&lt;!everyone&gt;" in slack and "<!everyone>" not in slack
    assert "&lt;https://evil.example|yourbank.com&gt;" in slack and "<https://evil" not in slack
    (discord,) = [p for p in chat_payloads["discord"] if "channel" in p["content"]]
    assert discord["allowed_mentions"] == {"parse": []} and "<@U123>" not in discord["content"]
    measured(slack_text=slack.splitlines()[1][:160])


@row("F23")
def test_f23_javascript_link_is_never_linked(chat_payloads: dict[str, Any]) -> None:
    """F23: an entry linking to javascript: is sent without a link (plain text only)."""
    assert "javascript:" not in _about(chat_payloads["slack"], "text", "script link")
    assert "javascript:" not in _about(chat_payloads["discord"], "content", "script link")


@row("F24")
def test_f24_pipe_and_angle_in_a_link_are_percent_encoded(chat_payloads: dict[str, Any]) -> None:
    """F24: a link with | and > is percent-encoded inside Slack's <url|text>, which stays whole."""
    slack = _about(chat_payloads["slack"], "text", "pipe link")
    link = safe_link("https://news.example/a|b>c")
    assert link and "%7C" in link and "%3E" in link
    assert f"<{link}|Zanzibar pipe link>" in slack


@row("F25")
def test_f25_discord_markdown_from_a_title_is_escaped(chat_payloads: dict[str, Any]) -> None:
    """F25: [bank](https://evil), ||spoiler||, # Heading and @everyone arrive escaped: no masked
    link, spoiler, heading or mention."""
    content = _about(chat_payloads["discord"], "content", "spoiler")
    assert "[bank](https://evil)" not in content and "](http" not in content
    assert "||spoiler||" not in content and "\\@everyone" in content and "\\#" in content


@row("F26")
def test_f26_forged_log_line_in_a_title_stays_one_line(chat_payloads: dict[str, Any]) -> None:
    """F26: a title with a newline, a fake log line and U+202E forges no line in the logs, the
    console, Slack or Discord, and the override character is gone."""
    poll: Poll = chat_payloads["poll"]
    outputs = [poll.alerts, *poll.logs, _slack_text(chat_payloads["slack"]),
               *(p["content"] for p in chat_payloads["discord"])]  # fmt: skip
    for output in outputs:
        assert not any(line.lstrip("> ").startswith("2026-01-01") for line in output.splitlines())
    assert "\u202e" not in _slack_text(chat_payloads["slack"]) + poll.alerts


@row("F12")
def test_f12_alerts_for_huge_fields_fit_the_providers(tmp_path: Path, server: FeedServer) -> None:
    """F12: the alerts for a 5 MB title and a 10 MB description fit Discord's 2,000 characters
    and stay small for Slack."""
    server.routes["/huge"] = feed_route(huge_fields())
    with running() as slack, running() as discord:
        sinks = "".join(
            f"  - {{name: {kind}, type: {kind}, url: '{r.url()}', allow_private_networks: true, "
            "min_interval: 0.01s}\n"
            for kind, r in (("slack", slack), ("discord", discord))
        )
        pair = FeedPair(tmp_path, server, server.url("/huge"), fetch=BIG, sinks=sinks)
        try:
            poll = pair.poll()
        finally:
            pair.close()
    assert poll.hostile.new == 1
    assert all(len(p["content"]) <= 2000 for p in _bodies(discord))
    longest_slack = max(len(p["text"]) for p in _bodies(slack))
    assert longest_slack <= 4000  # Slack truncates message text at 40,000; ours is far below
    measured(discord_max_chars=max(len(p["content"]) for p in _bodies(discord)),
             slack_max_chars=longest_slack)  # fmt: skip


# --- the feedparser corpus ---------------------------------------------------------------


def _robustness() -> Any:
    if "robustness" in sys.modules:
        return sys.modules["robustness"]
    spec = importlib.util.spec_from_file_location("robustness", ROOT / "bench" / "robustness.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules["robustness"] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def _needs_corpus() -> None:
    if not CORPUS.is_dir():
        pytest.skip(f"the feedparser corpus is not at {CORPUS} (../shared/corpus/feedparser)")


def test_corpus_through_parse_and_normalise() -> None:
    """3(c) corpus figure: every corpus file gives articles or a clean feed error; no exception
    escapes and no field exceeds its cap (bench/robustness.py, reused)."""
    _needs_corpus()
    report = _robustness().check_corpus(CORPUS)
    errors = sum(n for reason, n in report.reasons.items() if reason != "ok")
    figure("corpus", "files", report.files)
    figure("corpus", "parsed", report.reasons["ok"])
    figure("corpus", "clean errors (not_a_feed and feed errors)", errors)
    figure("corpus", "escaped exceptions", len(report.escaped))
    figure("corpus", "fields over their caps", len(report.capped))
    assert report.escaped == [] and report.capped == []
    assert report.reasons["ok"] + errors == report.files


def _header(body: bytes) -> str:
    """The Content-Type a corpus file asks to be served with (its ``Header:`` comment)."""
    found = re.search(rb"Header:\s*Content-type:\s*([^\r\n]+)", body, re.I)
    return found.group(1).decode("latin-1").strip() if found else "application/xml"


@row("F6")
def test_f6_encoding_fixtures_through_the_pipeline(tmp_path: Path, server: FeedServer) -> None:
    """F6: the 82 encoding and 8 illformed/chardet fixtures, served with their Content-Type to
    a real pipeline, each store entries (valid text) or give a clean feed error."""
    _needs_corpus()
    files = sorted([*(CORPUS / "encoding").glob("*.xml"),
                    *(CORPUS / "illformed" / "chardet").glob("*.xml")])  # fmt: skip
    feeds = []
    for n, path in enumerate(files):
        body = path.read_bytes()
        server.routes[f"/corpus/{n}"] = feed_route(body, _header(body))
        feeds.append(f"    - {{name: c{n}, url: '{server.url(f'/corpus/{n}')}', interval: 1m}}\n")
    (tmp_path / "watchlists").mkdir()
    (tmp_path / "watchlists" / "w.yaml").write_text("rules:\n  - {id: r, query: Zanzibar}\n")
    (tmp_path / "monitor.yaml").write_text(
        f"database: sqlite:///{tmp_path / 'm.db'}\nsources:\n  feeds:\n{''.join(feeds)}"
        "fetch: {allow_private_networks: true, timeout: 5s, parse_timeout: 5s}\n"
    )
    config = load_config(tmp_path / "monitor.yaml", env={})
    store = Store(config.database_url)
    pipeline = Pipeline(config, store, {"console": ConsoleSink()}, Clock(datetime.now(UTC)))
    try:
        summaries = pipeline.poll_all(settle_seconds=0)  # an escaped exception raises here
        with store.reading() as s:
            texts = s.execute(text("SELECT title, body FROM articles")).all()
    finally:
        pipeline.close()
        store.close()
    outcomes = Counter((s.error or "stored").split(":")[0] for s in summaries)
    for title, body in texts:
        (title + body).encode("utf-8")
        assert "\x00" not in title + body
    assert len(summaries) == len(files) == 90
    figure("corpus", "F6 fixtures through the pipeline: outcomes", dict(outcomes))
    measured(files=len(files), articles=len(texts), outcomes=dict(outcomes))
