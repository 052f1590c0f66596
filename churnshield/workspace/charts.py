"""Line charts drawn on the server as inline SVG: no chart library, no script, nothing from a CDN.

The admin's Content-Security-Policy allows scripts and styles only from this site (or with a
nonce), so a chart made of SVG elements with presentation attributes and classes styled by
`workspace/workspace.css` renders everywhere, prints, and needs no JavaScript. Each point carries
a `<title>`, which browsers show as a tooltip.
"""

import datetime as dt
from dataclasses import dataclass, field

from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString, mark_safe

WIDTH, HEIGHT = 640, 200
LEFT, RIGHT, TOP, BOTTOM = 40, 12, 12, 26
DOTS_UP_TO = 31


@dataclass
class Series:
    """One line: `points` are (day, value or None for a gap); `css` picks its colour."""

    name: str
    css: str
    points: list[tuple[dt.date, float | None]] = field(default_factory=list)
    unit: str = ""


def _x(day: dt.date, start: dt.date, end: dt.date) -> float:
    span = max((end - start).days, 1)
    return LEFT + (WIDTH - LEFT - RIGHT) * (day - start).days / span


def _y(value: float, y_max: float) -> float:
    return TOP + (HEIGHT - TOP - BOTTOM) * (1 - min(max(value, 0.0), y_max) / y_max)


def _ticks(start: dt.date, end: dt.date, count: int = 5) -> list[dt.date]:
    span = (end - start).days
    if span <= 0:
        return [start]
    return [start + dt.timedelta(days=round(span * i / (count - 1))) for i in range(count)]


def nice_max(values: list[float], floor: float = 10.0, ceiling: float = 100.0) -> float:
    """A round top for the y axis a little above the largest value (10, 20, 30… up to `ceiling`)."""
    top = max((v for v in values if v is not None), default=0.0) * 1.15
    return min(ceiling, max(floor, 10.0 * -(-top // 10)))


def line_chart(
    *,
    series: list[Series],
    start: dt.date,
    end: dt.date,
    y_max: float = 100.0,
    label: str,
    markers: list[tuple[dt.date, str]] | None = None,
) -> SafeString:
    """An SVG line chart of `series` between `start` and `end` on a 0–`y_max` scale.

    `markers` are vertical dashed lines with a short label (e.g. "model: xgb-3" on the day the
    scoring model changed).
    """
    parts: list[str] = []
    for value in (0, y_max / 2, y_max):
        y = _y(value, y_max)
        parts.append(
            format_html(
                '<line class="cs-grid" x1="{}" x2="{}" y1="{}" y2="{}"/>'
                '<text class="cs-axis" x="{}" y="{}" text-anchor="end">{}</text>',
                LEFT,
                WIDTH - RIGHT,
                f"{y:.1f}",
                f"{y:.1f}",
                LEFT - 6,
                f"{y + 4:.1f}",
                f"{value:g}",
            )
        )
    ticks = _ticks(start, end)
    for i, day in enumerate(ticks):
        anchor = "start" if i == 0 else "end" if i == len(ticks) - 1 else "middle"
        parts.append(
            format_html(
                '<text class="cs-axis" x="{}" y="{}" text-anchor="{}">{}</text>',
                f"{_x(day, start, end):.1f}",
                HEIGHT - 8,
                anchor,
                day.strftime("%d %b"),
            )
        )
    for day, text in markers or []:
        if not start <= day <= end:
            continue
        x = _x(day, start, end)
        parts.append(
            format_html(
                '<line class="cs-marker" x1="{}" x2="{}" y1="{}" y2="{}"><title>{}</title></line>'
                '<text class="cs-marker-label" x="{}" y="{}" text-anchor="end">{}</text>',
                f"{x:.1f}",
                f"{x:.1f}",
                TOP,
                HEIGHT - BOTTOM,
                text,
                f"{x - 3:.1f}",
                TOP + 10,
                text,
            )
        )
    for line in series:
        segments: list[list[tuple[float, float, dt.date, float]]] = [[]]
        for day, value in line.points:
            if value is None:
                segments.append([])
                continue
            segments[-1].append((_x(day, start, end), _y(value, y_max), day, value))
        for segment in segments:
            if len(segment) > 1:
                path = " ".join(f"{x:.1f},{y:.1f}" for x, y, _, _ in segment)
                parts.append(format_html('<polyline class="cs-line {}" points="{}"/>', line.css, path))
            if len(line.points) > DOTS_UP_TO:
                continue  # a dense daily line reads better without a dot per day
            parts.extend(
                format_html(
                    '<circle class="cs-dot {}" cx="{}" cy="{}" r="3"><title>{}: {} {}{}</title></circle>',
                    line.css,
                    f"{x:.1f}",
                    f"{y:.1f}",
                    line.name,
                    day.strftime("%d %b %Y"),
                    f"{value:.1f}",
                    line.unit,
                )
                for x, y, day, value in segment
            )
    legend = format_html_join(
        "",
        '<span class="cs-legend-item"><span class="cs-swatch {}"></span>{}</span>',
        ((s.css, s.name) for s in series),
    )
    svg = format_html_join("", "{}", ((part,) for part in parts))
    return format_html(
        '<figure class="cs-chart"><svg viewBox="0 0 {} {}" role="img" aria-label="{}" '
        'preserveAspectRatio="xMidYMid meet">{}</svg><figcaption>{}</figcaption></figure>',
        WIDTH,
        HEIGHT,
        label,
        svg,
        legend,
    )


def _svg(width: int, height: int, label: str, parts: list[str], caption: str | SafeString = "") -> SafeString:
    svg = format_html_join("", "{}", ((part,) for part in parts))
    return format_html(
        '<figure class="cs-chart"><svg viewBox="0 0 {} {}" role="img" aria-label="{}" '
        'preserveAspectRatio="xMidYMid meet">{}</svg><figcaption>{}</figcaption></figure>',
        width,
        height,
        label,
        svg,
        caption,
    )


def nice_share_max(values: list[float]) -> float:
    """A round top for a 0–1 axis a little above the largest value (0.1, 0.2, … 1.0)."""
    top = max(values, default=0.0) * 1.1
    return min(1.0, max(0.1, -(-round(top * 1000) // 100) / 10))


def reliability_chart(*, bins: list[dict], label: str) -> SafeString:
    """Predicted against observed churn per probability bin (`mean_predicted`, `observed_rate`,
    `n`, `low`, `high`), with the diagonal a perfectly calibrated model would follow.

    Both axes stop a little above the largest value: on a book where 6 % churn, a 0–100 % square
    would crowd every point into its corner.
    """
    size, left, bottom, top, right = 320, 44, 34, 12, 22
    scale = nice_share_max([v for b in bins for v in (b["mean_predicted"], b["observed_rate"])])
    inner = size - left - right

    def x(value: float) -> float:
        return left + inner * min(value, scale) / scale

    def y(value: float) -> float:
        return top + (size - top - bottom) * (1 - min(value, scale) / scale)

    parts: list[str] = []
    for step in range(5):
        value = scale * step / 4
        parts.append(
            format_html(
                '<line class="cs-grid" x1="{}" x2="{}" y1="{}" y2="{}"/>'
                '<text class="cs-axis" x="{}" y="{}" text-anchor="end">{}</text>'
                '<text class="cs-axis" x="{}" y="{}" text-anchor="middle">{}</text>',
                left,
                size - right,
                f"{y(value):.1f}",
                f"{y(value):.1f}",
                left - 6,
                f"{y(value) + 4:.1f}",
                f"{value * 100:.0f}%",
                f"{x(value):.1f}",
                size - bottom + 14,
                f"{value * 100:.0f}%",
            )
        )
    parts.append(
        format_html(
            '<line class="cs-diagonal" x1="{}" y1="{}" x2="{}" y2="{}"><title>perfect calibration</title></line>',
            f"{x(0):.1f}",
            f"{y(0):.1f}",
            f"{x(scale):.1f}",
            f"{y(scale):.1f}",
        )
    )
    parts.append(
        format_html(
            '<text class="cs-axis" x="{}" y="{}" text-anchor="middle">predicted</text>',
            left + inner / 2,
            size - 4,
        )
    )
    points = [(x(b["mean_predicted"]), y(b["observed_rate"]), b) for b in bins]
    if len(points) > 1:
        path = " ".join(f"{px:.1f},{py:.1f}" for px, py, _ in points)
        parts.append(format_html('<polyline class="cs-line cs-observed" points="{}"/>', path))
    parts.extend(
        format_html(
            '<circle class="cs-dot cs-observed" cx="{}" cy="{}" r="4"><title>{}–{}: predicted {}, observed {} '
            "(n={})</title></circle>",
            f"{px:.1f}",
            f"{py:.1f}",
            f"{b['low'] * 100:.0f}%",
            f"{b['high'] * 100:.0f}%",
            f"{b['mean_predicted'] * 100:.1f}%",
            f"{b['observed_rate'] * 100:.1f}%",
            b["n"],
        )
        for px, py, b in points
    )
    caption = mark_safe(
        '<span class="cs-legend-item"><span class="cs-swatch cs-observed"></span>observed churn rate per bin</span>'
        '<span class="cs-legend-item"><span class="cs-swatch cs-diagonal-swatch"></span>perfect calibration</span>'
    )
    return _svg(size, size, label, parts, caption)


def bar_chart(*, rows: list[tuple[str, float]], label: str, unit: str = "%") -> SafeString:
    """Horizontal bars, one per (name, value), longest scaled to the full width; the value is
    written at the end of each bar."""
    row_height, label_width, top = 22, 270, 6
    height = top * 2 + row_height * max(len(rows), 1)
    longest = max((value for _, value in rows), default=0.0) or 1.0
    span = WIDTH - label_width - 70
    parts: list[str] = []
    for position, (name, value) in enumerate(rows):
        y = top + position * row_height
        width = span * max(value, 0.0) / longest
        parts.append(
            format_html(
                '<text class="cs-bar-label" x="{}" y="{}" text-anchor="end">{}</text>'
                '<rect class="cs-bar" x="{}" y="{}" width="{}" height="{}" rx="2"><title>{}: {}{}</title></rect>'
                '<text class="cs-axis" x="{}" y="{}">{}{}</text>',
                label_width - 8,
                y + 15,
                name if len(name) <= 42 else f"{name[:41]}…",
                label_width,
                y + 4,
                f"{width:.1f}",
                row_height - 8,
                name,
                f"{value:.1f}",
                unit,
                f"{label_width + width + 6:.1f}",
                y + 15,
                f"{value:.1f}",
                unit,
            )
        )
    return _svg(WIDTH, height, label, parts)
