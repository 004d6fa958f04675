"""The sink and rule keys of issue #4: secrets (C6), SSRF at load (C5), digests, realert."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from hostile_rows import row

from monitor.config import load_config
from monitor.errors import ConfigError

GOOD = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


def load(tmp_path: Path, sink: str, rule: str = "{id: r, query: x}") -> list[str]:
    (tmp_path / "watchlists").mkdir(exist_ok=True)
    (tmp_path / "watchlists" / "w.yaml").write_text(f"rules:\n  - {rule}\n")
    (tmp_path / "monitor.yaml").write_text(f"sinks:\n  - {sink}\ndefaults: {{notify: [s]}}\n")
    try:
        load_config(tmp_path / "monitor.yaml", env={})
    except ConfigError as e:
        return [str(p) for p in e.problems]
    return []


@row("C6")
@pytest.mark.parametrize(
    ("secret", "message"),
    [
        ("'eight888'", "24–64 bytes, this one is 8"),
        ("'whsec_not*base64'", "must be base64"),
        ("['" + GOOD + "', 'x', 'y']", "at most two secrets"),
    ],
)
def test_bad_secrets_are_refused_without_echo(tmp_path: Path, secret: str, message: str) -> None:
    """C6: short, non-base64 or too many secrets are refused; the secret is never echoed."""
    found = load(
        tmp_path, f"{{name: s, type: webhook, url: 'https://h.example/x', secret: {secret}}}"
    )
    assert any(message in p for p in found), found
    assert not any("eight888" in p or "not*base64" in p for p in found)


@row("C5")
def test_private_webhook_url_refused_at_load_unless_opted_in(tmp_path: Path) -> None:
    """C5 at load: loopback and metadata literals are refused; the sink's opt-in allows them."""
    for host in ("127.0.0.1:9", "169.254.169.254", "localhost", "[::ffff:10.0.0.1]"):
        sink = f"{{name: s, type: webhook, url: 'http://{host}/x', secret: '{GOOD}'}}"
        assert any("private, loopback" in p for p in load(tmp_path, sink)), host
    allowed = f"{{name: s, type: webhook, url: 'http://127.0.0.1:9/x', secret: '{GOOD}', " \
              "allow_private_networks: true}"  # fmt: skip
    assert load(tmp_path, allowed) == []


def test_digest_timezone_retry_and_realert_are_validated(tmp_path: Path) -> None:
    """Bad cron, unknown zone, digest on a webhook and a bad realert are each reported in place."""
    found = load(
        tmp_path,
        f"{{name: s, type: webhook, url: 'https://h.example/x', secret: '{GOOD}', "
        "digest: '61 8 * * *', timezone: Mars/Base, retry: [5s, soon]}",
        rule="{id: r, query: x, realert: never}",
    )
    text = "\n".join(found)
    for place in ("sinks[0].digest", "sinks[0].timezone", "sinks[0].retry[1]", "rules[0].realert"):
        assert place in text, text


def test_good_delivery_keys_load(tmp_path: Path) -> None:
    """A Slack digest in Asia/Seoul with a retry schedule, and a rule with realert, load."""
    sink = ("{name: s, type: slack, url: 'https://hooks.example/x', digest: '0 8 * * *', "
            "timezone: Asia/Seoul, retry: [5s, 1m], min_interval: 2s, timeout: 5s}")  # fmt: skip
    assert load(tmp_path, sink, rule="{id: r, query: x, realert: 6h}") == []
    config = load_config(tmp_path / "monitor.yaml", env={})
    assert config.sinks[0].retry == (timedelta(seconds=5), timedelta(minutes=1))
    assert config.rules[0].realert == timedelta(hours=6)
