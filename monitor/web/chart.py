"""Per-rule hit counts over time as a generated SVG (no script, no CDN: works offline).

Small multiples, one row of daily bars per rule on a shared scale, rather
than one chart of overlapping lines: with a dozen rules, overlapping lines and
a colour legend are hard to read, while rows keep every rule legible. Every
string is escaped here, since the SVG is inserted into the page as markup.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from html import escape

LABEL_WIDTH = 260
ROW_HEIGHT = 34
TOTAL_WIDTH = 120
AXIS_HEIGHT = 22
BAR_GAP = 1.0
SEVERITY_COLOURS = {
    "critical": "#b42318", "high": "#d9480f", "medium": "#1f6feb", "low": "#2f9e44",
    "info": "#868e96",
}  # fmt: skip


@dataclass(frozen=True)
class ChartRow:
    rule_id: str
    title: str
    severity: str
    per_day: Mapping[str, int]  # "YYYY-MM-DD" -> hits

    @property
    def total(self) -> int:
        return sum(self.per_day.values())


def days_ending(last: date, count: int) -> list[str]:
    """``count`` ISO days ending with ``last``, oldest first."""
    return [(last - timedelta(days=count - 1 - i)).isoformat() for i in range(count)]


def render_chart(rows: Sequence[ChartRow], days: Sequence[str], width: int = 1100) -> str:
    """An SVG with one row of daily bars per rule; bars share one vertical scale."""
    plot = width - LABEL_WIDTH - TOTAL_WIDTH
    height = AXIS_HEIGHT + ROW_HEIGHT * max(1, len(rows))
    peak = max((n for row in rows for n in row.per_day.values()), default=0) or 1
    step = plot / max(1, len(days))
    parts = [
        f'<svg id="hits-chart" xmlns="http://www.w3.org/2000/svg" width="{width}" '
        f'height="{height}" viewBox="0 0 {width} {height}" role="img" '
        f'aria-label="Hits per rule per day, {escape(days[0])} to {escape(days[-1])}">'
        if days
        else f'<svg id="hits-chart" xmlns="http://www.w3.org/2000/svg" width="{width}" '
        f'height="{height}">',
        *_axis(days, step),
    ]
    if not rows:
        parts.append(f'<text x="{LABEL_WIDTH}" y="{AXIS_HEIGHT + 20}" class="empty">'
                     "No hits in this period.</text>")  # fmt: skip
    for i, row in enumerate(rows):
        parts.extend(_row(row, days, AXIS_HEIGHT + i * ROW_HEIGHT, step, peak, plot))
    parts.append("</svg>")
    return "".join(parts)


def _axis(days: Sequence[str], step: float) -> list[str]:
    """Day labels at the start, middle and end, and a tick at each Monday."""
    parts = []
    for i, day in enumerate(days):
        x = LABEL_WIDTH + i * step
        if date.fromisoformat(day).weekday() == 0:
            parts.append(f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{AXIS_HEIGHT - 4}" '
                         f'y2="{AXIS_HEIGHT}" stroke="#adb5bd"/>')  # fmt: skip
    for i in sorted({0, len(days) // 2, len(days) - 1}):
        if 0 <= i < len(days):
            anchor = "start" if i == 0 else "end" if i == len(days) - 1 else "middle"
            x = LABEL_WIDTH + i * step + (step if anchor == "end" else step / 2 if i else 0)
            parts.append(f'<text x="{x:.1f}" y="14" font-size="12" fill="#495057" '
                         f'text-anchor="{anchor}">{escape(days[i])}</text>')  # fmt: skip
    return parts


def _row(row: ChartRow, days: Sequence[str], top: float, step: float, peak: int, plot: float
         ) -> list[str]:  # fmt: skip
    colour = SEVERITY_COLOURS.get(row.severity, SEVERITY_COLOURS["medium"])
    bar_area = ROW_HEIGHT - 8
    title = row.title if len(row.title) <= 34 else row.title[:33] + "…"
    parts = [
        f'<g class="rule-row" data-rule="{escape(row.rule_id)}">',
        f'<rect x="{LABEL_WIDTH}" y="{top + 2}" width="{plot:.1f}" height="{bar_area + 2}" '
        'fill="#f8f9fa"/>',
        f'<text x="0" y="{top + ROW_HEIGHT / 2 + 4:.1f}" font-size="13" fill="#212529">'
        f"<title>{escape(row.title)} ({escape(row.rule_id)})</title>{escape(title)}</text>",
    ]
    for i, day in enumerate(days):
        n = row.per_day.get(day, 0)
        if not n:
            continue
        h = max(4.0, bar_area * n / peak)  # a single hit beside a busy day stays visible
        x = LABEL_WIDTH + i * step + BAR_GAP / 2
        bar_width = max(1.0, step - BAR_GAP)
        parts.append(
            f'<rect x="{x:.1f}" y="{top + 4 + bar_area - h:.1f}" width="{bar_width:.1f}" '
            f'height="{h:.1f}" fill="{colour}"><title>{escape(day)}: {n} hit'
            f"{'s' if n != 1 else ''}</title></rect>"
        )
    parts.append(
        f'<text x="{LABEL_WIDTH + plot + 12:.1f}" y="{top + ROW_HEIGHT / 2 + 4:.1f}" '
        f'font-size="13" fill="#495057">{row.total} hit{"s" if row.total != 1 else ""}</text></g>'
    )
    return parts
