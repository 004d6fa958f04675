"""Slack and Discord sinks with untrusted feed text (F22–F26), against loopback receivers."""

from __future__ import annotations

import itertools
import json
import re
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hostile_rows import row
from sqlmodel import select

from casebook import case, figure
from faultkit import TimedReceiver
from flows import make_flow
from monitor.domain import Alert, Match, Rule
from monitor.sinks.chat import discord_text, safe_link, slack_text
from monitor.store.tables import DeliveryRow
from receivers import Reply, running

HOSTILE = "<!everyone> @channel <@U123> <https://evil.example|yourbank.com> & co"
RULE = Rule(id="r", title="Rule", query="x", notify=("chat",))


def alert(title: str, url: str | None = "https://news.example/a", snippet: str = "") -> Alert:
    now = datetime(2026, 11, 28, tzinfo=UTC)
    return Alert(
        delivery_id="d1", sink="chat", rule_id="r", article_id=1, title=title, body="",
        url=url, source="feed", published_at=None, fetched_at=now, matches=(Match(0, 1, "x"),),
        snippet=snippet or title, story_id=1, story_articles=1, attempts=0, hit_at=now,
    )  # fmt: skip


@row("F22")
def test_slack_escapes_mentions_and_spoofed_links() -> None:
    """F22: Slack text carries &lt;!everyone&gt;, &lt;https…&gt; and &amp; — no raw control
    sequence from the feed survives."""
    text = slack_text(alert(HOSTILE), RULE)
    assert "&lt;!everyone&gt;" in text and "&lt;@U123&gt;" in text
    assert "&lt;https://evil.example|yourbank.com&gt;" in text and "&amp; co" in text
    untrusted = text.replace("<https://news.example/a|", "")  # our own link is the only one
    assert not re.search(r"<[!@#]|<https?://evil", untrusted)


@row("F25")
def test_discord_escapes_markdown_and_mentions() -> None:
    """F22/F25: no masked link, heading, spoiler or mention survives unescaped."""
    title = "[bank](https://evil) ||spoiler|| # Heading @everyone " + HOSTILE
    text = discord_text(alert(title), RULE)
    assert "[bank](https://evil)" not in text and "\\[bank\\]\\(https\\:" in text
    assert "||spoiler||" not in text and "\\#" in text and "\\@everyone" in text


@row("F24")
def test_link_with_pipe_and_angle_is_percent_encoded_and_only_http() -> None:
    """F24/F23: `|` and `>` in a link are percent-encoded; javascript: and data: are not links."""
    assert safe_link("https://a.example/x|y>z") == "https://a.example/x%7Cy%3Ez"
    assert safe_link("javascript:alert(1)") is None
    assert safe_link("data:text/html,<b>") is None


@row("F26")
def test_newline_and_bidi_cannot_forge_lines() -> None:
    """F26: a title with `\\n2026-01-01 ERROR forged` and U+202E stays on its own line."""
    title = "Quiet day\n2026-01-01 ERROR forged\u202eevil"
    for text in (slack_text(alert(title), RULE), discord_text(alert(title), RULE)):
        assert not any(line.startswith("2026-01-01") for line in text.splitlines())
        assert "\u202e" not in text


def _chat_flow(tmp_path: Path, kind: str, url: str):  # type: ignore[no-untyped-def]
    sinks = (f"  - {{name: chat, type: {kind}, url: '{url}', allow_private_networks: true,"
             " min_interval: 1s}\n")  # fmt: skip
    watchlist = "rules:\n  - {id: r, query: channel}\n"
    return make_flow(tmp_path, sinks, notify="[chat]", watchlist=watchlist)


@row("F22")
@pytest.mark.parametrize("kind", ["slack", "discord"])
def test_hostile_title_over_the_wire(tmp_path: Path, kind: str) -> None:
    """F22 end to end: the receiver gets an escaped Slack text, or Discord content with
    allowed_mentions.parse == [] and at most 2,000 characters."""
    with running() as receiver:
        flow = _chat_flow(tmp_path, kind, receiver.url())
        flow.drop("hostile.txt", HOSTILE + "\n" + "A long body about the channel. " * 200)
        flow.pipeline.poll_all(settle_seconds=0)
        flow.pipeline.deliver_due()
        flow.close()
    [got] = receiver.requests
    body = json.loads(got.body)
    if kind == "slack":
        assert "<!everyone>" not in body["text"] and "&lt;!everyone&gt;" in body["text"]
    else:
        assert body["allowed_mentions"] == {"parse": []}
        assert len(body["content"]) <= 2000 and "<@U123>" not in body["content"]


@case("S11", "fault", "410 Gone / Discord 404: sink disabled, pending dead, no more requests")
def test_discord_404_disables_the_sink(tmp_path: Path) -> None:
    """S11: a deleted Discord webhook (404) disables the sink like a 410."""
    with running() as receiver:
        gone = b'{"message": "Unknown Webhook", "code": 10015}'
        receiver.answer("/hook", Reply(404, {"Content-Type": "application/json"}, gone))
        flow = _chat_flow(tmp_path, "discord", receiver.url())
        flow.drop("a.txt", "About the channel\nbody")
        flow.pipeline.poll_all(settle_seconds=0)
        flow.pipeline.deliver_due()
        flow.close()
    assert flow.store.sink_states()["chat"].status == "disabled"
    with flow.store.reading() as s:
        [row] = s.exec(select(DeliveryRow))
    assert row.status == "failed" and "sink_gone" in (row.last_error or "")
    figure("retry", "S11 Discord: requests after the 404", len(receiver.requests) - 1)


@case("S10", "fault", "429 Retry-After (webhook, Slack) and Discord retry_after: honoured")
def test_discord_retry_after_in_json_body(tmp_path: Path) -> None:
    """S10: Discord's JSON `retry_after: 64.57` defers the next attempt by at least that."""
    with running() as receiver:
        receiver.answer("/hook", Reply(429, {"Content-Type": "application/json"},
                                       b'{"retry_after": 64.57, "global": false}'))  # fmt: skip
        flow = _chat_flow(tmp_path, "discord", receiver.url())
        flow.drop("a.txt", "About the channel\nbody")
        flow.pipeline.poll_all(settle_seconds=0)
        flow.pipeline.deliver_due()
        flow.close()
    with flow.store.reading() as s:
        [row] = s.exec(select(DeliveryRow))
    assert row.next_attempt_at is not None
    assert (row.next_attempt_at - flow.clock.now).total_seconds() >= 64.57
    figure("retry", "S10 Discord retry_after 64.57 s: next attempt after s",
           round((row.next_attempt_at - flow.clock.now).total_seconds(), 2))  # fmt: skip


@case("S10", "fault", "429 Retry-After (webhook, Slack) and Discord retry_after: honoured")
def test_slack_429_then_at_most_one_message_a_second(tmp_path: Path) -> None:
    """S10: Slack's 429 Retry-After: 30 holds the whole sink 30 s (fake clock); then its
    messages go out at most one a second (real time: the per-destination limiter)."""
    receiver = TimedReceiver().start()
    try:
        receiver.answer("/hook", Reply(429, {"Retry-After": "30"}), Reply(200))
        flow = _chat_flow(tmp_path, "slack", receiver.url())
        for n in range(4):
            flow.drop(f"a{n}.txt", f"Channel story {n}\nA different body number {n} entirely.")
        flow.pipeline.poll_all(settle_seconds=0)
        flow.pipeline.deliver_due()
        assert len(receiver.requests) == 1
        flow.clock.advance(seconds=29)
        flow.pipeline.deliver_due()
        early = len(receiver.requests) - 1
        flow.clock.advance(seconds=2)
        flow.pipeline.deliver_due()
        flow.close()
    finally:
        receiver.stop()
    times = [at for at, _, _ in receiver.arrivals[1:]]
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert early == 0 and len(times) == 4
    assert min(gaps) >= 0.99  # min_interval 1s, measured on the receiver's clock
    figure("retry", "S10 Slack Retry-After 30 s: violations", early)
    figure("retry", "S10 Slack min gap between messages s (limit 1/s)", round(min(gaps), 3))


def test_slack_digest_sends_one_message(tmp_path: Path) -> None:
    """A digest sink holds its deliveries and sends them together as one message."""
    with running() as receiver:
        sinks = (
            f"  - {{name: chat, type: slack, url: '{receiver.url()}', allow_private_networks: "
            "true, digest: '0 8 * * *', timezone: Asia/Seoul}\n"
        )
        watchlist = "rules:\n  - {id: r, query: channel}\n"
        flow = make_flow(tmp_path, sinks, notify="[chat]", watchlist=watchlist)
        for n in range(3):
            flow.drop(f"a{n}.txt", f"Channel story {n}\nA different body number {n} entirely.")
        flow.pipeline.poll_all(settle_seconds=0)
        flow.pipeline.deliver_due()
        assert receiver.requests == []  # held for the digest
        report = flow.pipeline.send_digest("chat")
        flow.close()
    assert report.delivered == 3
    [got] = receiver.requests
    assert "Digest: 3 hits" in json.loads(got.body)["text"]
