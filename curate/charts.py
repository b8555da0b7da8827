"""Small inline SVG charts for the curation report: `bars`, `histogram`, `funnel`.

Pure functions returning SVG text. No scripts, fonts or images, so the page opens offline; every
label is escaped. Each chart carries `data-chart="<id>"`, and each drawn figure its value in
`data-value` (and a `<title>` tooltip), so a test (or a reader's tool) can check what was drawn.
"""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence

COLOURS = ("#4a78b5", "#d9822b", "#5a9e5a", "#b5524a")


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def fmt(value: float) -> str:
    """A number as drawn: integers plainly, others to three decimals."""
    v = float(value)
    return str(int(v)) if v.is_integer() else f"{v:.3f}"


def _open(chart: str, title: str, width: int, height: int) -> list[str]:
    return [
        f'<svg xmlns="http://www.w3.org/2000/svg" data-chart="{_e(chart)}" width="{width}" height="{height}" '
        f'role="img" aria-label="{_e(title)}"><title>{_e(title)}</title>',
        f'<text x="0" y="12" font-size="13" font-weight="bold">{_e(title)}</text>',
    ]


def bars(values: Mapping[str, float | None], title: str, chart: str, width: int = 640) -> str:
    """Horizontal bars, label → value (None values are left out); '' when there is nothing to draw."""
    items = [(str(k), float(v)) for k, v in values.items() if isinstance(v, (int, float)) and not isinstance(v, bool)]
    if not items:
        return ""
    top = max(v for _, v in items) or 1.0
    bar_h, label_w = 18, 220
    parts = _open(chart, title, width, bar_h * len(items) + 24)
    for i, (label, v) in enumerate(items):
        y = 20 + i * bar_h
        w = max(1.0, (width - label_w - 80) * v / top)
        parts.append(
            f'<g class="bar" data-label="{_e(label)}" data-value="{_e(fmt(v))}"><title>{_e(label)}: {fmt(v)}</title>'
            f'<text x="0" y="{y + 13}" font-size="12">{_e(label[:34])}</text>'
            f'<rect x="{label_w}" y="{y + 2}" width="{w:.1f}" height="{bar_h - 4}" fill="{COLOURS[0]}"/>'
            f'<text x="{label_w + w + 4:.1f}" y="{y + 13}" font-size="12">{fmt(v)}</text></g>'
        )
    parts.append("</svg>")
    return "".join(parts)


def histogram(
    edges: Sequence[float], series: Mapping[str, Sequence[int]], title: str, chart: str, width: int = 640
) -> str:
    """Vertical bars per bin, one colour per series (bin i spans edges[i]..edges[i+1]); '' when empty."""
    series = {k: list(v) for k, v in series.items() if v}
    if not series or len(edges) < 2:
        return ""
    n_bins = len(edges) - 1
    top = max((c for counts in series.values() for c in counts), default=0) or 1
    plot_h, left, bottom = 140, 40, 40
    height = 24 + plot_h + bottom + 16 * len(series)
    slot = (width - left) / n_bins
    bar_w = max(1.0, (slot - 2) / len(series))
    parts = _open(chart, title, width, height)
    base = 24 + plot_h
    parts.append(f'<line x1="{left}" y1="{base}" x2="{width}" y2="{base}" stroke="#888"/>')
    parts.append(f'<text x="0" y="30" font-size="11">{fmt(top)}</text>')
    for s, (name, counts) in enumerate(series.items()):
        colour = COLOURS[s % len(COLOURS)]
        for i, c in enumerate(counts):
            h = plot_h * c / top
            x = left + i * slot + s * bar_w
            lo, hi = fmt(edges[i]), fmt(edges[i + 1])
            parts.append(
                f'<rect class="bin" data-series="{_e(name)}" data-bin="{i}" data-lo="{lo}" data-hi="{hi}" '
                f'data-value="{c}" x="{x:.1f}" y="{base - h:.1f}" width="{bar_w:.1f}" height="{h:.1f}" '
                f'fill="{colour}"><title>{_e(name)} {lo}–{hi}: {c}</title></rect>'
            )
        y = base + bottom + 16 * s
        parts.append(f'<rect x="{left}" y="{y - 9}" width="10" height="10" fill="{colour}"/>')
        parts.append(f'<text x="{left + 14}" y="{y}" font-size="11">{_e(name)}</text>')
    for i, anchor in ((0, "start"), (n_bins // 2, "middle"), (n_bins, "end")):  # "end": the last stays inside
        x = left + i * slot
        parts.append(f'<text x="{x:.1f}" y="{base + 14}" font-size="11" text-anchor="{anchor}">{fmt(edges[i])}</text>')
    parts.append("</svg>")
    return "".join(parts)


def funnel(stages: Sequence[tuple[str, int]], title: str, chart: str, width: int = 640) -> str:
    """Rows left after each step, as centred bars narrowing down; '' when there are no steps."""
    if not stages:
        return ""
    top = max(c for _, c in stages) or 1
    bar_h, label_w = 20, 200
    span = width - label_w - 60
    parts = _open(chart, title, width, bar_h * len(stages) + 24)
    for i, (label, count) in enumerate(stages):
        y = 20 + i * bar_h
        w = max(1.0, span * count / top)
        x = label_w + (span - w) / 2
        parts.append(
            f'<g class="stage" data-label="{_e(label)}" data-value="{count}"><title>{_e(label)}: {count}</title>'
            f'<text x="0" y="{y + 14}" font-size="12">{_e(label[:30])}</text>'
            f'<rect x="{x:.1f}" y="{y + 2}" width="{w:.1f}" height="{bar_h - 4}" fill="{COLOURS[2]}"/>'
            f'<text x="{label_w + span + 4}" y="{y + 14}" font-size="12">{count}</text></g>'
        )
    parts.append("</svg>")
    return "".join(parts)
