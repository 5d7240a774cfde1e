"""The release report: one self-contained ``report.html`` beside a run's ``summary.json``.

It is made from the typed summary (``summary.ReleaseReport``, read back from
``summary.json`` by ``summary.load``), the build records the summary points at,
and the repository's generation history, so it can be rendered again later from
a kept run folder. Everything is inline (CSS, SVG
charts): it opens from a CI artefact store or a mail attachment with no
network. ``write_release`` serves ``xcpbuild release``; ``write_backpressure``
serves a single ``verify backpressure`` run.
"""

from __future__ import annotations

import datetime as dt
import importlib.resources
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import jinja2
from markupsafe import Markup

from xcpbuild.errors import XcpbuildError
from xcpbuild.log import get_logger
from xcpbuild.pipeline.build import record
from xcpbuild.pipeline.publish import history
from xcpbuild.pipeline.publish.evr import DiffEntry
from xcpbuild.pipeline.release import charts

if TYPE_CHECKING:  # the types only: `verify backpressure` renders its page without the release's modules
    from xcpbuild.pipeline.release.summary import BuildData, PublishData, ReleaseReport, VerifyData
    from xcpbuild.pipeline.release.upstreams import PatchRow

log = get_logger("report")

REPORT = "report.html"
TEMPLATE = "report.html.j2"


@dataclass
class BuildView:
    name: str
    folder: str
    reused: bool
    record: dict[str, Any] | None  # build-record.json, None when the folder has none
    reproducible: dict[str, bool] | None = None  # file -> identical in two builds, when the plan asked


@dataclass
class ChannelView:
    channel: str
    added: list[str]
    generations: list[int]
    changes: list[DiffEntry] = field(default_factory=list)
    note: str = ""


@dataclass
class TrialView:
    package: str
    trial: dict[str, Any]
    chart: charts.TrialChart
    svg: Markup


@dataclass
class HealthMatrix:
    refs: list[str]
    rows: list[tuple[str, str, list[str]]]  # (package, patch, status per ref; "" where not checked)
    notes: list[PatchRow]  # packages without a patch series


def health_matrix(rows: Sequence[PatchRow]) -> HealthMatrix:
    """Package × ref: one row per (package, patch), one column per ref checked."""
    refs: list[str] = []
    cells: dict[tuple[str, str], dict[str, str]] = {}
    notes = []
    for row in rows:
        if row.patch == "-":
            notes.append(row)
            continue
        if row.ref not in refs:
            refs.append(row.ref)
        cells.setdefault((row.package, row.patch), {})[row.ref] = row.status
    return HealthMatrix(refs, [(p, patch, [c.get(r, "") for r in refs]) for (p, patch), c in cells.items()], notes)


def _builds(data: BuildData) -> list[BuildView]:
    views = []
    for name, built in data.packages.items():
        kept = record.load(built.folder)
        views.append(
            BuildView(name, str(built.folder), built.reused, kept.to_json() if kept else None, built.reproducible)
        )
    return views


def _trials(data: VerifyData) -> tuple[list[TrialView], list[dict[str, Any]]]:
    """The export-server trials (charted) and the probe results in the verify step."""
    trials, probes = [], []
    for name, checked in data.checks.items():
        recorded = checked.data
        for trial in recorded.get("trials") or []:
            chart = charts.trial_chart(trial)
            trials.append(TrialView(name, dict(trial), chart, Markup(charts.render_svg(chart))))
        if "verdict" in recorded:
            probes.append({"name": name, **recorded, "error_line": _error_line(recorded)})
    return trials, probes


def _error_line(probe: Mapping[str, Any]) -> str:
    for run in probe.get("runs") or []:
        if isinstance(run, Mapping) and run.get("error"):
            return str(run["error"]).strip().splitlines()[-1]
    return str(probe.get("reason") or "")


def _channels(data: PublishData, repo_root: Path, release: str | None) -> list[ChannelView]:
    views = []
    for channel, published in data.channels.items():
        view = ChannelView(channel, list(published.added), [g for g in published.generations if g is not None])
        if not view.added:
            view.note = "nothing new: the live generation stays"
        elif release is None:
            view.note = "no release given: the diff is not shown"
        else:
            try:
                view.changes = history.diff(repo_root, release, channel).changes
            except XcpbuildError as exc:
                view.note = f"no diff: {exc.message}"
        views.append(view)
    return views


def _template() -> jinja2.Template:
    source = importlib.resources.files(__package__).joinpath("templates", TEMPLATE).read_text()
    env = jinja2.Environment(autoescape=True)  # optional keys of older summaries render empty
    env.filters["mib"] = lambda n: "-" if n is None else f"{int(n) / charts.MIB:.1f} MiB"
    env.globals["status_class"] = _status_class
    return env.from_string(source)


def _status_class(status: object) -> str:
    """A CSS class per status word: ``applies`` -> ``st-applies``, ``needs fuzz`` -> ``st-needs-fuzz``."""
    text = str(status).strip().replace(" ", "-")
    return f"st-{text}" if text else "st-none"


def _render(context: Mapping[str, Any]) -> str:
    generated = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    return _template().render(generated=generated, **context)


def write_release(run_dir: Path, report: ReleaseReport, *, release: str | None = None) -> Path:
    """Render ``run_dir/report.html`` for a release run's summary (``summary.load``); returns its path."""
    trials, probes = _trials(report.verify.data)
    context = {
        "kind": "release",
        "title": f"release of {Path(report.plan).name} on {report.target}",
        "summary": report,
        "steps": report.steps,
        "health": health_matrix(report.sources.data.health or []),
        "builds": _builds(report.build.data),
        "trials": trials,
        "probes": probes,
        "channels": _channels(report.publish.data, report.repo_root, release),
        "release": release,
    }
    return _write(run_dir, context)


def write_backpressure(run_dir: Path, report: Mapping[str, Any]) -> Path:
    """Render ``run_dir/report.html`` for one ``verify backpressure`` download; returns its path."""
    chart = charts.trial_chart(report)
    trial = TrialView("verify backpressure", dict(report), chart, Markup(charts.render_svg(chart)))
    context = {
        "kind": "backpressure",
        "title": f"backpressure check of {report.get('url', '?')}",
        "summary": report,
        "steps": [],
        "health": health_matrix([]),
        "builds": [],
        "trials": [trial],
        "probes": [],
        "channels": [],
        "release": None,
    }
    return _write(run_dir, context)


def _write(run_dir: Path, context: Mapping[str, Any]) -> Path:
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / REPORT
    partial = path.with_suffix(".html.partial")
    partial.write_text(_render(context))
    partial.replace(path)
    return path
