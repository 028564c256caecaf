"""Line charts as inline SVG in plain HTML: no JavaScript and nothing to download, so a chart opens
anywhere (the demo's cost and utilisation, a backtest's replicas)."""

from __future__ import annotations

import html
from typing import Any


def svg_chart(title: str, series: list[dict[str, Any]], label: str, unit: str) -> str:
    width, height, pad = 760, 240, 40
    points = [(float(t), float(v)) for s in series for t, v in s["values"]]
    if not points:
        return f"<h2>{html.escape(title)}</h2><p>no data</p>"
    t0, t1 = min(p[0] for p in points), max(p[0] for p in points) or 1
    vmax = max(*(p[1] for p in points), 1e-9)
    colours = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2"]
    lines, legend = [], []
    for i, s in enumerate(series):
        xy = " ".join(
            f"{pad + (float(t) - t0) / max(t1 - t0, 1) * (width - 2 * pad):.1f},"
            f"{height - pad - float(v) / vmax * (height - 2 * pad):.1f}"
            for t, v in s["values"]
        )
        colour = colours[i % len(colours)]
        lines.append(f'<polyline fill="none" stroke="{colour}" stroke-width="2" points="{xy}"/>')
        legend.append(
            f'<span style="color:{colour}">&#9632; {html.escape(s["metric"].get(label, "?"))}</span>'
        )
    axis = (
        f'<text x="4" y="{pad}" font-size="11">{vmax:.1f}{unit}</text>'
        f'<text x="4" y="{height - pad}" font-size="11">0</text>'
        f'<line x1="{pad}" y1="{height - pad}" x2="{width - pad}" y2="{height - pad}" stroke="#999"/>'
    )
    return (
        f"<h2>{html.escape(title)}</h2><svg width='{width}' height='{height}'>{axis}{''.join(lines)}</svg>"
        f"<p>{' &nbsp; '.join(legend)}</p>"
    )
