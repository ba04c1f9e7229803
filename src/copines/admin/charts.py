"""Small server-rendered SVG charts (no script, no CDN): stacked columns and horizontal bars."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from html import escape

from markupsafe import Markup

FONT = 'font-family="system-ui, sans-serif" font-size="12"'


def _nice_max(value: float) -> float:
    """A round axis maximum at or above `value` (1, 2, 2.5 or 5 times a power of ten)."""
    if value <= 0:
        return 1.0
    base = 10 ** math.floor(math.log10(value))
    for step in (1, 2, 2.5, 5, 10):
        if step * base >= value * (1 - 1e-9):
            return step * base
    return 10 * base


def columns(
    labels: Sequence[str],
    series: Sequence[tuple[str, str, Sequence[float]]],
    *,
    title: str,
    fmt: Callable[[float], str] = lambda v: f"{v:g}",
    width: int = 960,
    height: int = 240,
    integer: bool = False,
) -> Markup:
    """Stacked columns: one column per label, one coloured segment per (name, colour, values)."""
    left, bottom, top, right = 72, 28, 12, 8
    plot_w, plot_h = width - left - right, height - top - bottom
    totals = [sum(values[i] for _, _, values in series) for i in range(len(labels))]
    vmax = _nice_max(max(totals, default=0))
    if integer:  # whole-number ticks for counts
        vmax = 4 * math.ceil(vmax / 4)
    n = max(len(labels), 1)
    slot = plot_w / n
    bar = max(2.0, slot * 0.7)
    parts = [
        f'<svg class="chart" viewBox="0 0 {width} {height}" role="img" '
        f'aria-label="{escape(title)}" xmlns="http://www.w3.org/2000/svg">',
        f"<title>{escape(title)}</title>",
    ]
    for k in range(5):
        value = vmax * k / 4
        y = top + plot_h - plot_h * k / 4
        parts.append(
            f'<line x1="{left}" x2="{width - right}" y1="{y:.1f}" y2="{y:.1f}" '
            f'stroke="#e5e0ea" stroke-width="1"/>'
            f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end" fill="#6b6375" {FONT}>'
            f"{escape(fmt(value))}</text>"
        )
    every = max(1, round(n / 10))
    for i, label in enumerate(labels):
        x = left + slot * i + (slot - bar) / 2
        y = top + plot_h
        for name, colour, values in series:
            v = values[i]
            if v <= 0:
                continue
            h = plot_h * v / vmax
            y -= h
            parts.append(
                f'<rect x="{x:.1f}" y="{y:.1f}" width="{bar:.1f}" height="{h:.1f}" '
                f'fill="{escape(colour)}"><title>{escape(label)} · {escape(name)} : '
                f"{escape(fmt(v))}</title></rect>"
            )
        if i % every == 0:
            parts.append(
                f'<text x="{x + bar / 2:.1f}" y="{height - 10}" text-anchor="middle" '
                f'fill="#6b6375" {FONT}>{escape(label)}</text>'
            )
    parts.append("</svg>")
    return Markup("".join(parts))


def bars(
    items: Sequence[tuple[str, float, str]],
    *,
    title: str,
    fmt: Callable[[float], str] = lambda v: f"{v:g}",
    width: int = 260,
    row: int = 24,
) -> Markup:
    """Horizontal bars, one per (label, value, colour), with the value printed at the end."""
    label_w, value_w = 96, 52
    height = max(row * len(items), row) + 8
    vmax = max((v for _, v, _ in items), default=0) or 1
    plot_w = width - label_w - value_w
    parts = [
        f'<svg class="chart bars" viewBox="0 0 {width} {height}" role="img" '
        f'aria-label="{escape(title)}" xmlns="http://www.w3.org/2000/svg">',
        f"<title>{escape(title)}</title>",
    ]
    for i, (label, value, colour) in enumerate(items):
        y = 4 + i * row
        w = plot_w * value / vmax
        parts.append(
            f'<text x="{label_w - 6}" y="{y + row / 2 + 4:.1f}" text-anchor="end" '
            f'fill="#2d2433" {FONT}>{escape(label)}</text>'
            f'<rect x="{label_w}" y="{y + 4}" width="{w:.1f}" height="{row - 8}" rx="3" '
            f'fill="{escape(colour)}"/>'
            f'<text x="{label_w + w + 6:.1f}" y="{y + row / 2 + 4:.1f}" fill="#2d2433" {FONT}>'
            f"{escape(fmt(value))}</text>"
        )
    parts.append("</svg>")
    return Markup("".join(parts))
