"""Charts of verification trials: bytes received over time, the stall shaded, a cut stream marked.

``trial_chart`` turns what a trial recorded (the verifier's timeline and
events) into the data one chart shows; ``render_svg`` draws it with
pygal, as an ``<svg>`` element to inline in the report (pygal: a tenth of
matplotlib's start-up time, which counts in a release's budget). It is
imported on first use, so commands that draw nothing do not pay for it.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

MIB = 1024 * 1024
MAX_POINTS = 400  # per line: enough for a 640 px wide chart
PAUSE = 0.25  # seconds without data that thinning must not hide
_SCRIPT = re.compile(r"<script\b.*?</script>", re.DOTALL)
_STALLED = re.compile(r"stalled ([0-9.]+) s at byte (\d+)")


@dataclass(frozen=True)
class TrialChart:
    """What one chart shows: samples in (seconds, bytes), stall windows in seconds, where it was cut."""

    title: str
    samples: tuple[tuple[float, int], ...]
    stalls: tuple[tuple[float, float], ...]  # (start, end)
    content_length: int | None
    cut: tuple[float, int] | None  # (seconds, bytes) where the stream ended short
    end: float  # seconds: when the download ended (the axis runs to here)


def _stall_windows(
    samples: Sequence[tuple[float, int]], events: Sequence[str], stall: float
) -> list[tuple[float, float]]:
    """Each ``stalled S s at byte N`` event starts when byte N had arrived; without events, the longest gap."""
    windows = []
    for event in events:
        match = _STALLED.search(event)
        if not match:
            continue
        seconds, at = float(match.group(1)), int(match.group(2))
        start = next((t for t, n in samples if n >= at), None)
        if start is not None:
            windows.append((start, start + seconds))
    if windows or stall <= 0 or len(samples) < 2:
        return windows
    gaps = [(b[0] - a[0], a[0]) for a, b in itertools.pairwise(samples)]
    _, start = max(gaps)
    return [(start, start + stall)]


def trial_chart(trial: Mapping[str, Any]) -> TrialChart:
    """The chart of one trial of the export-server check (or of one ``verify backpressure`` report)."""
    samples = tuple((float(t), int(n)) for t, n in trial.get("timeline") or [])
    events = [str(e) for e in trial.get("events") or []]
    length = trial.get("content_length")
    received = int(trial.get("bytes_received") or (samples[-1][1] if samples else 0))
    end = max(float(trial.get("seconds") or trial.get("duration_s") or 0.0), samples[-1][0] if samples else 0.0)
    cut = None
    if trial.get("outcome") == "truncated" and samples:
        cut = (samples[-1][0], received)
    policy = trial.get("policy")
    fmt = trial.get("fmt") or trial.get("format") or "?"
    title = f"{fmt} export, --eagain-policy {policy}" if policy else f"{fmt} export"
    return TrialChart(
        title=title,
        samples=samples,
        stalls=tuple(_stall_windows(samples, events, float(trial.get("stall") or 0.0))),
        content_length=int(length) if length is not None else None,
        cut=cut,
        end=end,
    )


def _steps(samples: Sequence[tuple[float, int]], limit: int = MAX_POINTS) -> list[tuple[float, float]]:
    """The samples as a step line in MiB (flat until the next sample), thinned to about ``limit`` points.

    Thinning keeps every sample that follows a gap longer than the stride's time, so pauses stay exact.
    """
    stride = max(1, len(samples) // max(1, limit // 2))
    last = len(samples) - 1

    def keep(i: int) -> bool:
        return i % stride == 0 or i == last or samples[i + 1][0] - samples[i][0] > PAUSE

    kept = [s for i, s in enumerate(samples) if keep(i)]
    points: list[tuple[float, float]] = []
    for index, (t, n) in enumerate(kept):
        if index:
            points.append((t, kept[index - 1][1] / MIB))
        points.append((t, n / MIB))
    return points


def render_svg(chart: TrialChart) -> str:
    """The chart as an inline ``<svg>`` element drawn by pygal (no script, no external reference)."""
    import pygal
    from pygal.style import Style

    style = Style(
        background="white",
        plot_background="white",
        font_family="sans-serif",
        colors=("#1f5fa8", "#f2a900", "#555555", "#c0392b"),
        opacity=".35",
        opacity_hover=".5",
    )
    points = _steps(chart.samples)
    size = (chart.content_length or 0) / MIB
    top = max([*(y for _, y in points), size, 0.1]) * 1.08
    end = max(chart.end, points[-1][0] if points else 0.0, 0.1) * 1.02
    plot = pygal.XY(
        style=style,
        width=640,
        height=300,
        title=chart.title,
        x_title="seconds",
        y_title="MiB received",
        xrange=(0, end),
        range=(0, top),
        show_dots=False,
        js=[],  # pygal's tooltips script would be fetched from the network
        disable_xml_declaration=True,
        legend_at_bottom=True,
    )
    plot.add("bytes received", points, stroke_style={"width": 2})
    for start, stop in chart.stalls:
        plot.add("client stall", [(start, 0), (start, top), (stop, top), (stop, 0)], fill=True)
    if not chart.stalls:
        plot.add("no stall", [])
    if chart.content_length is not None:
        plot.add("export size", [(0, size), (end, size)], stroke_style={"width": 1, "dasharray": "6,4"})
    if chart.cut is not None:
        at, got = chart.cut
        plot.add("stream cut", [(at, got / MIB)], stroke=False, show_dots=True, dots_size=6)
    plot.legend_at_bottom_columns = len(plot.raw_series)  # one row: a fixed count clips a shorter legend
    svg = str(plot.render(is_unicode=True))
    # pygal always adds a script holding its own config, for its tooltips; the page runs no script.
    return _SCRIPT.sub("", svg)
