"""Line charts drawn on the server as inline SVG: no chart library, no script, nothing from a CDN.

The admin's Content-Security-Policy allows scripts and styles only from this site (or with a
nonce), so a chart made of SVG elements with presentation attributes and classes styled by
`workspace/workspace.css` renders everywhere, prints, and needs no JavaScript. Each point carries
a `<title>`, which browsers show as a tooltip.
"""

import datetime as dt
import math
from collections.abc import Callable
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


def _y_grid(y_max: float, text: Callable[[float], str]) -> list[str]:
    """Horizontal grid lines at 0, half and the top of a 0–`y_max` axis, each labelled on the left."""
    return [
        format_html(
            '<line class="cs-grid" x1="{}" x2="{}" y1="{}" y2="{}"/>'
            '<text class="cs-axis" x="{}" y="{}" text-anchor="end">{}</text>',
            LEFT,
            WIDTH - RIGHT,
            f"{_y(value, y_max):.1f}",
            f"{_y(value, y_max):.1f}",
            LEFT - 6,
            f"{_y(value, y_max) + 4:.1f}",
            text(value),
        )
        for value in (0, y_max / 2, y_max)
    ]


def nice_max(values: list[float | None], floor: float = 10.0, ceiling: float = 100.0) -> float:
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
    parts = _y_grid(y_max, lambda value: f"{value:g}")
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


# --- Bars ---------------------------------------------------------------------------------------

BAR_WIDTH = 640
LABEL_CHARS = 34  # category names are shortened past this (the full name shows as a tooltip)
CHAR_WIDTH = 6.6  # average advance of a 12px sans-serif character, to size the names' column
BAR_VALUE_WIDTH = 90  # room for the value printed right of each bar
BAR_ROW, BAR_THICKNESS, BAR_PAD = 24, 16, 6


def _value_text(value: float, unit: str) -> str:
    """A bar's value as printed: money with a thousands separator and no cents, counts as integers."""
    if unit == "$":
        return f"${value:,.0f}"
    if unit == "%":
        return f"{value:.1f}%"
    return f"{value:,.0f}{unit}" if float(value).is_integer() else f"{value:,.1f}{unit}"


def _short(text: str) -> str:
    return text if len(text) <= LABEL_CHARS else text[: LABEL_CHARS - 1] + "…"


def _label_width(labels: list[str]) -> int:
    """Room left of the bars for the longest (shortened) category name."""
    longest = max((len(_short(text)) for text in labels), default=0)
    return round(min(max(longest * CHAR_WIDTH + 14, 60), LABEL_CHARS * CHAR_WIDTH + 14))


def _bar_label(text: str, y: float, width: int) -> SafeString:
    """The category name right-aligned left of a bar, its full text as a tooltip when shortened."""
    short = _short(text)
    return format_html(
        '<text class="cs-axis cs-bar-label" x="{}" y="{}" text-anchor="end">{}{}</text>',
        width - 8,
        f"{y + BAR_THICKNESS - 4:.1f}",
        short,
        format_html("<title>{}</title>", text) if short != text else "",
    )


def _svg(width: int, height: int, label: str, parts: list[str], caption: str = "") -> SafeString:
    svg = format_html_join("", "{}", ((part,) for part in parts))
    return format_html(
        '<figure class="cs-chart cs-bars"><svg viewBox="0 0 {} {}" role="img" aria-label="{}" '
        'preserveAspectRatio="xMinYMin meet">{}</svg>{}</figure>',
        width,
        height,
        label,
        svg,
        format_html("<figcaption>{}</figcaption>", caption) if caption else "",
    )


def _legend(items: list[tuple[str, str]]) -> SafeString:
    return format_html_join(
        "", '<span class="cs-legend-item"><span class="cs-swatch cs-block {}"></span>{}</span>', items
    )


def bar_chart(
    *,
    labels: list[str],
    values: list[float],
    label: str,
    unit: str = "",
    css: str | list[str] = "cs-bar-default",
    titles: list[str] | None = None,
    x_max: float | None = None,
    intervals: list[tuple[float, float] | None] | None = None,
) -> SafeString:
    """Horizontal bars, one per label, longest = `x_max` (the largest value or interval end by
    default), each with its value printed at its end and a `<title>` tooltip ("label: value", or
    `titles[i]`).

    `css` is one class for every bar or one per bar (e.g. a risk level's colour); `unit` is "$"
    (money), "%" or a suffix for counts; `intervals` draws an error bar (low, high) across a bar.
    """
    classes = [css] * len(labels) if isinstance(css, str) else css
    ends = [high for _, high in filter(None, intervals or [])]
    top = x_max or max([*values, *ends], default=0) or 1
    left = _label_width(labels)
    span = BAR_WIDTH - left - BAR_VALUE_WIDTH
    parts: list[str] = []
    for i, (name, value) in enumerate(zip(labels, values, strict=True)):
        y = BAR_PAD + i * BAR_ROW
        length = span * max(value, 0) / top
        text = _value_text(value, unit)
        value_x = left + length + 6
        parts.append(_bar_label(name, y, left))
        parts.append(
            format_html(
                '<rect class="cs-bar {}" x="{}" y="{}" width="{}" height="{}" rx="2"><title>{}</title></rect>',
                classes[i],
                left,
                y,
                f"{length:.1f}",
                BAR_THICKNESS,
                titles[i] if titles else f"{name}: {text}",
            )
        )
        interval = intervals[i] if intervals else None
        if interval is not None:
            x1, x2 = (left + span * max(end, 0) / top for end in interval)
            middle, cap = y + BAR_THICKNESS / 2, BAR_THICKNESS / 2 - 2
            value_x = max(value_x, x2 + 6)  # the value reads past the whisker, not across it
            parts.append(
                format_html(
                    '<path class="cs-whisker" d="M{} {}H{}M{} {}V{}M{} {}V{}"><title>{}</title></path>',
                    f"{x1:.1f}",
                    f"{middle:.1f}",
                    f"{x2:.1f}",
                    f"{x1:.1f}",
                    f"{middle - cap:.1f}",
                    f"{middle + cap:.1f}",
                    f"{x2:.1f}",
                    f"{middle - cap:.1f}",
                    f"{middle + cap:.1f}",
                    f"{name}: {_value_text(interval[0], unit)} to {_value_text(interval[1], unit)}",
                )
            )
        parts.append(
            format_html(
                '<text class="cs-bar-value" x="{}" y="{}">{}</text>',
                f"{value_x:.1f}",
                f"{y + BAR_THICKNESS - 4:.1f}",
                text,
            )
        )
    return _svg(BAR_WIDTH, BAR_PAD * 2 + BAR_ROW * len(labels), label, parts)


@dataclass
class Stack:
    """One part of every bar of a stacked chart: its name (legend), colour class and a value per bar."""

    name: str
    css: str
    values: list[float]


def stacked_bar_chart(*, labels: list[str], stacks: list[Stack], label: str, unit: str = "") -> SafeString:
    """Horizontal bars made of parts (e.g. succeeded, failed, open per intervention type), the
    bar's total printed at its end, each part with a `<title>` tooltip and a legend below."""
    totals = [sum(stack.values[i] for stack in stacks) for i in range(len(labels))]
    top = max(totals, default=0) or 1
    left = _label_width(labels)
    span = BAR_WIDTH - left - BAR_VALUE_WIDTH
    parts: list[str] = []
    for i, name in enumerate(labels):
        y = BAR_PAD + i * BAR_ROW
        x = float(left)
        parts.append(_bar_label(name, y, left))
        for stack in stacks:
            value = stack.values[i]
            if value <= 0:
                continue
            length = span * value / top
            parts.append(
                format_html(
                    '<rect class="cs-bar {}" x="{}" y="{}" width="{}" height="{}"><title>{}: {} {}</title></rect>',
                    stack.css,
                    f"{x:.1f}",
                    y,
                    f"{length:.1f}",
                    BAR_THICKNESS,
                    name,
                    _value_text(value, unit),
                    stack.name.lower(),
                )
            )
            x += length
        parts.append(
            format_html(
                '<text class="cs-bar-value" x="{}" y="{}">{}</text>',
                f"{x + 6:.1f}",
                f"{y + BAR_THICKNESS - 4:.1f}",
                _value_text(totals[i], unit),
            )
        )
    return _svg(
        BAR_WIDTH,
        BAR_PAD * 2 + BAR_ROW * len(labels),
        label,
        parts,
        _legend([(stack.css, stack.name) for stack in stacks]),
    )


def _round_up(value: float) -> float:
    """The next round number (1, 2, 3, 4, 5, 6 or 8 times a power of ten) at or above `value`, at least 1."""
    if value <= 1:
        return 1.0
    magnitude = 10 ** math.floor(math.log10(value))
    return next(step * magnitude for step in (1, 2, 3, 4, 5, 6, 8, 10) if step * magnitude >= value)


def column_chart(
    *,
    labels: list[str],
    values: list[float],
    label: str,
    unit: str = "",
    css: str | list[str] = "cs-bar-default",
    legend: list[tuple[str, str]] | None = None,
) -> SafeString:
    """Vertical bars (a histogram: `labels` are the bins left to right), the count above each bar,
    a `<title>` tooltip per bar, and an optional legend of (css class, name)."""
    classes = [css] * len(labels) if isinstance(css, str) else css
    y_max = _round_up(max(values, default=0) * 1.15)
    slot = (WIDTH - LEFT - RIGHT) / max(len(labels), 1)
    parts = _y_grid(y_max, lambda value: _value_text(value, unit))
    for i, (name, value) in enumerate(zip(labels, values, strict=True)):
        x = LEFT + i * slot
        top = _y(value, y_max)
        text = _value_text(value, unit)
        parts.append(
            format_html(
                '<rect class="cs-bar {}" x="{}" y="{}" width="{}" height="{}"><title>{}: {}</title></rect>'
                '<text class="cs-bar-value" x="{}" y="{}" text-anchor="middle">{}</text>'
                '<text class="cs-axis" x="{}" y="{}" text-anchor="middle">{}</text>',
                classes[i],
                f"{x + 3:.1f}",
                f"{top:.1f}",
                f"{slot - 6:.1f}",
                f"{HEIGHT - BOTTOM - top:.1f}",
                name,
                text,
                f"{x + slot / 2:.1f}",
                f"{top - 4:.1f}",
                text if value else "",
                f"{x + slot / 2:.1f}",
                HEIGHT - 8,
                name,
            )
        )
    return _svg(WIDTH, HEIGHT, label, parts, _legend(legend) if legend else "")


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
