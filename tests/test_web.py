"""The dashboard (issue #8) through its real app on a real SQLite file with fixture data."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from starlette.testclient import TestClient
from webdata import NOW, OLD_SANCTIONS_HITS, SCRIPT_TITLE, WebData, build

from monitor.cli import main
from monitor.config import Config, load_config
from monitor.errors import ConfigError
from monitor.http import Health, create_app
from monitor.web import create_web_app

TOKEN = "s3cret-token-for-tests-0123456789"


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WebData]:
    """One fixture database for the module: every page is read-only."""
    built = build(tmp_path_factory.mktemp("web"))
    yield built
    built.store.close()


def client_for(data: WebData, listen: str = "127.0.0.1:9464", config: Config | None = None
               ) -> TestClient:  # fmt: skip
    config = config or data.config
    app = create_web_app(data.store.engine, lambda: config, listen, clock=lambda: NOW)
    return TestClient(app, base_url="http://127.0.0.1")


@pytest.fixture
def client(data: WebData) -> TestClient:
    return client_for(data)


def rows(html: str) -> list[str]:
    """The hit table's body rows."""
    body = html.split('<table id="hits"', 1)[1].split("<tbody>", 1)[1].split("</tbody>")[0]
    return re.findall(r"<tr>(.*?)</tr>", body, re.S)


def test_hits_page_lists_newest_first_with_matched_words_marked(client: TestClient) -> None:
    """The newest hit comes first, and matched words are marked inside their sentence."""
    page = client.get("/")
    assert page.status_code == 200
    found = rows(page.text)
    assert "Ambassador <mark>Matsegora</mark> speaks" in found[0]  # the title, marked
    assert "<mark>Matsegora</mark> said relations grow." in found[0]
    summit = next(r for r in found if "announced" in r)
    assert (
        "<mark>North Korea</mark> and <mark>Russia</mark> agreed to hold a <mark>summit</mark>"
        in summit
    )
    assert len(found) == 50


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("rule=matsegora", {"matsegora"}),
        ("tag=korea", {"matsegora", "nk-russia-summit"}),
        ("tag=un", {"un-sanctions"}),
        ("severity=high", {"nk-russia-summit"}),
        ("severity=info", set()),
        ("tag=korea&severity=critical", {"matsegora"}),
        ("source=seeds", {"matsegora", "nk-russia-summit", "un-sanctions"}),
        ("source=yonhap", {"un-sanctions"}),
        ("since=2026-05-10", {"matsegora", "nk-russia-summit", "un-sanctions"}),
        ("until=2026-05-07", {"un-sanctions"}),
        ("since=2026-05-08&until=2026-05-09", set()),
    ],
)
def test_filters_select_the_right_hits(client: TestClient, query: str, expected: set[str]) -> None:
    """Each filter (rule, tag, severity, source, date range) keeps only the hits it names."""
    page = client.get(f"/?{query}")
    assert page.status_code == 200
    shown = set(re.findall(r'href="/\?rule=([a-z0-9_-]+)"', "".join(rows(page.text))))
    assert shown == expected


def test_source_and_date_filters_count_exactly(client: TestClient) -> None:
    """source=seeds shows exactly the three seed hits; the until day itself is included."""
    assert len(rows(client.get("/?source=seeds").text)) == 3
    old = rows(client.get("/?until=2026-05-07&since=2026-05-07").text)
    assert len(old) == 50  # the 60 old hits are all on 2026-05-07: a full first page


@pytest.mark.parametrize("query", ["since=yesterday", "until=2026-13-01", "before=abc",
                                   "since=2026-05-09&until=2026-05-01"])  # fmt: skip
def test_bad_filters_get_a_clear_400(client: TestClient, query: str) -> None:
    """A filter the page cannot read is a 400 that says what is wrong, not a crash."""
    page = client.get(f"/?{query}")
    assert page.status_code == 400
    assert re.search(r"must be a date|page cursor|before since", page.text)


def test_keyset_pages_cover_every_hit_once(client: TestClient) -> None:
    """Following 'Older' links walks every hit exactly once, newest to oldest."""
    seen: list[str] = []
    url = "/"
    while url:
        page = client.get(url)
        seen += re.findall(r'<td class="when"><a href="/hits/(\d+)"', page.text)
        older = re.search(r'rel="next" href="([^"]+)"', page.text)
        url = older.group(1).replace("&amp;", "&") if older else ""
    assert len(seen) == len(set(seen)) == OLD_SANCTIONS_HITS + 3


def test_pages_keep_the_filter(client: TestClient) -> None:
    """The next page link carries the filter, and page 2 holds only that rule's hits."""
    first = client.get("/?rule=un-sanctions")
    link = re.search(r'rel="next" href="([^"]+)"', first.text)
    assert link and "rule=un-sanctions" in link.group(1)
    second = client.get(link.group(1).replace("&amp;", "&"))
    assert len(rows(second.text)) == OLD_SANCTIONS_HITS + 1 - 50
    assert set(re.findall(r'href="/\?rule=([a-z0-9_-]+)"', second.text)) <= {"un-sanctions"}


def test_hit_page_shows_text_story_and_deliveries(client: TestClient, data: WebData) -> None:
    """A hit's page marks every match in the text, lists both outlets of its story and
    its deliveries with status and each attempt."""
    page = client.get(f"/hits/{data.summit_hit}")
    assert page.status_code == 200
    html = page.text
    assert "<mark>North Korea</mark>–<mark>Russia</mark> <mark>summit</mark> announced" in html
    assert "<mark>Putin</mark>" not in html  # Putin was not in this hit's matches
    assert html.count("<mark>") >= 7  # title 3 + body 3 + the match list
    story = html.split('<table class="story">', 1)[1].split("</table>", 1)[0]
    assert "seeds" in story and "yonhap" in story and "N. Korea, Russia to hold summit" in story
    deliveries = html.split('<table class="deliveries">', 1)[1].split("</table>", 1)[0]
    assert "status-failed" in deliveries and "status-pending" in deliveries
    assert deliveries.count('class="attempt"') == 2
    assert "HTTP 500 &lt;b&gt;boom&lt;/b&gt;" in deliveries


def test_missing_hit_is_404(client: TestClient) -> None:
    """An unknown hit id is a 404 page, not a server error."""
    assert client.get("/hits/999999").status_code == 404


def test_rules_page_charts_hits_per_day(client: TestClient) -> None:
    """The chart has a row per rule and bars for the days with hits, with their counts."""
    page = client.get("/rules?days=7")
    assert page.status_code == 200
    svg = page.text.split('<svg id="hits-chart"', 1)[1].split("</svg>", 1)[0]
    assert "<title>2026-05-07: 60 hits</title>" in svg
    assert "<title>2026-05-10: 1 hit</title>" in svg
    assert svg.count('class="rule-row"') == 3
    assert client.get("/rules?days=0").status_code == 400


def test_sources_page_shows_health_and_failing_deliveries(client: TestClient) -> None:
    """Source status, last error and next poll, and the failed delivery, are on the page."""
    html = client.get("/sources").text
    table = html.split('<table id="sources"', 1)[1].split("</table>", 1)[0]
    assert "status-failing" in table and "http_status: 503 Service Unavailable" in table
    assert "2026-05-10 12:40 UTC" in table  # next poll
    failing = html.split('<table id="failing"', 1)[1].split("</table>", 1)[0]
    assert "ops" in failing and "status-failed" in failing


def test_untrusted_text_is_escaped_everywhere(client: TestClient, data: WebData) -> None:
    """A <script> title and an <img onerror> body show as text on every page."""
    for url in ("/", f"/hits/{data.script_hit}", "/?tag=un", "/rules", "/sources"):
        html = client.get(url).text
        assert "<script" not in html and "<img" not in html and "<b>" not in html
    hit = client.get(f"/hits/{data.script_hit}").text
    assert "&lt;script&gt;alert(&#39;title&#39;)&lt;/script&gt; Sanctions panel &amp; report" in hit
    assert "&lt;img src=x onerror=&#34;alert(1)&#34;&gt;" in hit
    assert SCRIPT_TITLE not in hit


def test_every_page_sends_a_strict_csp(client: TestClient, data: WebData) -> None:
    """Every page forbids scripts and foreign resources, and the stylesheet is served."""
    for url in ("/", f"/hits/{data.summit_hit}", "/rules", "/sources", "/hits/0"):
        response = client.get(url)
        csp = response.headers["content-security-policy"]
        assert "default-src 'none'" in csp and "script-src" not in csp
        assert response.headers["x-content-type-options"] == "nosniff"
    css = client.get("/static/web.css")
    assert css.status_code == 200 and css.headers["content-type"].startswith("text/css")


def test_token_is_required_off_loopback(data: WebData) -> None:
    """Off loopback: no token or a wrong one is 401; a bearer token, or ?token= (which sets
    a cookie and redirects to the URL without it) lets the reader in."""
    config = load_config(data.config.path, {"LISTEN": "0.0.0.0:9464", "TOKEN": TOKEN})
    client = client_for(data, "0.0.0.0:9464", config)
    assert client.get("/").status_code == 401
    assert client.get("/", headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert client.get("/?token=wrong").status_code == 401
    assert client.get("/", headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 200
    redirect = client.get(f"/sources?token={TOKEN}&x=1", follow_redirects=False)
    assert redirect.status_code == 303 and redirect.headers["location"] == "/sources?x=1"
    assert "httponly" in redirect.headers["set-cookie"].lower()
    assert client.get("/sources").status_code == 200  # the cookie now carries the token
    assert TOKEN not in client.get("/sources").text


def test_loopback_needs_no_token(data: WebData) -> None:
    """On loopback the pages open without a token, even when one is configured."""
    config = load_config(data.config.path, {"TOKEN": TOKEN})
    assert client_for(data, "127.0.0.1:9464", config).get("/").status_code == 200
    assert client_for(data, "[::1]:9464", config).get("/").status_code == 200


def test_check_rejects_a_public_listen_without_token(data: WebData) -> None:
    """`monitor check` refuses http.listen off loopback without http.token, and a short
    token, naming the key and never echoing the token."""
    with pytest.raises(ConfigError, match=r"http\.token.*not loopback"):
        load_config(data.config.path, {"LISTEN": "0.0.0.0:9464"})
    with pytest.raises(ConfigError) as short:
        load_config(data.config.path, {"LISTEN": "10.0.0.5:80", "TOKEN": "tiny-secret"})
    assert "at least 16" in str(short.value) and "tiny-secret" not in str(short.value)
    assert main(["check", "--config", str(data.config.path)]) == 0


def test_cli_check_exits_2_for_public_listen_without_token(
    data: WebData, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`monitor check` and `monitor serve` exit 2 on a public address with no token."""
    monkeypatch.setenv("LISTEN", "0.0.0.0:9464")
    assert main(["check", "--config", str(data.config.path)]) == 2
    assert "http.token" in capsys.readouterr().err
    monkeypatch.delenv("LISTEN")
    with pytest.raises(SystemExit) as serve:
        main(["serve", "--config", str(data.config.path), "--listen", "0.0.0.0:9464"])
    assert serve.value.code == 2 and "not loopback" in capsys.readouterr().err


def test_daemon_app_serves_the_dashboard_beside_metrics(data: WebData) -> None:
    """create_app mounts the dashboard at / while /healthz and /metrics keep working."""
    app = create_app(Health(data.store, lambda: "h", lambda: data.config, "127.0.0.1:0"))
    client = TestClient(app, base_url="http://127.0.0.1")
    assert "Ambassador <mark>Matsegora</mark> speaks" in client.get("/").text
    assert client.get("/metrics").status_code == 200
    assert client.get("/healthz").json()["config_hash"] == "h"
