"""The console sink: a readable alert on standard output.

Shows the rule, the article title and source, and the sentence around the
first match with every matched word marked. Article text is untrusted, so it
is printed as plain text (rich markup in a headline is never interpreted).
"""

from __future__ import annotations

from typing import TextIO

from rich.console import Console
from rich.text import Text

from monitor.domain import Alert, Rule, snippet_around

SEVERITY_STYLE = {
    "info": "dim",
    "low": "cyan",
    "medium": "yellow",
    "high": "bold red",
    "critical": "bold white on red",
}


class ConsoleSink:
    def __init__(self, name: str = "console", file: TextIO | None = None):
        self.name = name
        self.console = Console(file=file, highlight=False, soft_wrap=True)

    def send(self, alert: Alert, rule: Rule) -> None:
        self.console.print(render(alert, rule, plain=not self.console.is_terminal))
        self.console.print()


def render(alert: Alert, rule: Rule, *, plain: bool = False) -> Text:
    """The alert as rich Text; ``plain`` marks matches with ** for files and pipes."""
    out = Text()
    out.append(f"[{rule.severity}] ", style=SEVERITY_STYLE.get(rule.severity, ""))
    out.append(rule.title, style="bold")
    out.append(f"  ({rule.id})\n", style="dim")
    out.append("  ")
    out.append(_one_line(alert.title), style="bold")
    out.append(f"  — {alert.source}", style="dim")
    if alert.story_articles > 1:
        out.append(f"  · story of {alert.story_articles} articles", style="dim")
    if alert.held_back:
        out.append(f"  · {alert.held_back} more held back (realert)", style="dim")
    out.append("\n  ")
    out.append_text(marked_snippet(alert, plain=plain))
    if alert.url:
        out.append(f"\n  {alert.url}", style="blue")
    return out


def marked_snippet(alert: Alert, *, plain: bool = False) -> Text:
    """The sentence around the first match, each match inside it highlighted."""
    mark = "**" if plain else ""
    text = alert.text
    if not alert.matches:
        return Text(_one_line(alert.snippet))
    first = alert.matches[0]
    lo, hi = snippet_around(text, first.start, first.end)
    out = Text()
    pos = lo
    for m in alert.matches:
        if m.start < pos or m.end > hi:
            continue
        out.append(_one_line(text[pos : m.start]))
        out.append(f"{mark}{_one_line(text[m.start : m.end])}{mark}", style="bold reverse")
        pos = m.end
    out.append(_one_line(text[pos:hi]))
    return out


def _one_line(text: str) -> str:
    """Feed text may carry newlines and control characters meant to forge output."""
    return "".join(" " if ch in "\r\n\t" or not ch.isprintable() else ch for ch in text)
