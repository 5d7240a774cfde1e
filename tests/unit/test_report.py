"""The release report's data: the verifier's timeline, one chart's series, the matrix, the rendered page."""

from __future__ import annotations

import itertools
import json
import re
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from xcpbuild import verifier as verify
from xcpbuild.exportserver.disk import parse_disk
from xcpbuild.exportserver.server import ExportServer
from xcpbuild.pipeline.build import record
from xcpbuild.pipeline.release import charts, report, summary
from xcpbuild.pipeline.release.upstreams import PatchRow
from xcpbuild.verifier.timeline import Timeline

MiB = 1024 * 1024


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_the_timeline_is_thinned_while_data_flows_but_keeps_where_a_pause_began() -> None:
    clock = Clock()
    timeline = Timeline(resolution=0.02, clock=clock)
    for _ in range(1000):  # 1 s of 64 KiB arrivals every millisecond
        clock.now += 0.001
        timeline.add(65536)
    before_stall = 1000 * 65536
    clock.now += 5.0  # a 5 s stall, then one more arrival
    timeline.add(1000)
    samples = timeline.samples()
    assert samples[0] == (0.0, 0)
    assert 40 <= len(samples) <= 60, len(samples)  # ~50 a second, not 1000
    assert [n for _, n in samples] == sorted(n for _, n in samples)
    assert samples[-2][0] == pytest.approx(1.0) and samples[-2][1] == before_stall  # the last arrival before the pause
    assert samples[-1][0] == pytest.approx(6.0) and samples[-1][1] == before_stall + 1000


def _trial(outcome: str, *, stall_at: int = 3 * MiB, received: int | None = None) -> dict[str, object]:
    total = 10 * MiB
    timeline = [(0.0, 0), (0.1, MiB), (0.2, 2 * MiB), (0.3, stall_at)]
    end = received if received is not None else total
    timeline += [(10.3, stall_at + MiB), (10.4, end)]
    return {
        "policy": "legacy-retry" if outcome == "truncated" else "wait",
        "fmt": "raw",
        "outcome": outcome,
        "bytes_received": end,
        "content_length": total,
        "stall": 10.0,
        "seconds": 10.5,
        "events": [f"stalled 10 s at byte {stall_at}"],
        "timeline": timeline,
    }


def test_a_trial_chart_shades_the_stall_from_where_its_byte_arrived_and_marks_the_cut() -> None:
    chart = charts.trial_chart(_trial("truncated", received=4 * MiB + 5))
    assert chart.stalls == ((0.3, 10.3),)
    assert chart.cut == (10.4, 4 * MiB + 5)
    assert chart.content_length == 10 * MiB and chart.end == 10.5
    assert chart.title == "raw export, --eagain-policy legacy-retry"
    complete = charts.trial_chart(_trial("complete"))
    assert complete.cut is None and complete.samples[-1] == (10.4, 10 * MiB)
    # No event (an older summary): the longest gap between samples is where the stall was.
    no_events = charts.trial_chart({**_trial("complete"), "events": []})
    assert no_events.stalls == ((0.3, 10.3),)


def test_the_step_line_is_thinned_but_keeps_the_flat_stretch_exact() -> None:
    flowing = [(round(i * 0.01, 2), i * 1000) for i in range(1000)]  # up to 9.99 s
    points = charts._steps([*flowing, (30.0, 1_000_000), (30.01, 1_001_000)], limit=100)
    assert len(points) <= 220
    assert max(t for t, _ in points if t < 30.0) == pytest.approx(9.99)  # where the pause began
    assert (30.0, 999_000 / charts.MIB) in points  # flat until the next arrival: a step, not a slope
    assert points[-1] == (30.01, 1_001_000 / charts.MIB)


def test_the_patch_health_matrix_is_package_by_ref() -> None:
    matrix = report.health_matrix(
        [
            PatchRow("vhd-tool", "v0.20.0", "fix.patch", "applies"),
            PatchRow("vhd-tool", "v0.23.0", "fix.patch", "conflicts"),
            PatchRow("vhd-tool", "v0.20.0", "other.patch", "needs fuzz"),
            PatchRow("xcp-export-server", "(this project)", "-", "no patches"),
        ]
    )
    assert matrix.refs == ["v0.20.0", "v0.23.0"]
    assert matrix.rows == [
        ("vhd-tool", "fix.patch", ["applies", "conflicts"]),
        ("vhd-tool", "other.patch", ["needs fuzz", ""]),
    ]
    assert [n.package for n in matrix.notes] == ["xcp-export-server"]


def _build_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "builds" / "xcp-export-server-1"
    folder.mkdir(parents=True)
    kept = record.BuildRecord(
        package="xcp-export-server", version="1.0", release="1.xcpng8.3", target="local", dist=".xcpng8.3",
        stage="rpm", key="k" * 64, started="2026-01-01T00:00:00Z", image_tag="xcpbuild-local:abc",
        image_id="sha256:" + "e" * 64,
        source=record.SourceInfo(kind="git", upstream="https://example.invalid/x.git", ref="v1", commit="c" * 40),
        inputs=(record.Input("x-1.0.tar.gz", "source", "a" * 64), record.Input("fix.patch", "patch", "b" * 64)),
        spec="xcp-export-server.spec", status="ok",
        outputs=(record.Artifact("RPMS/noarch/x.rpm", "rpm", "xcp-export-server-1.0-1.xcpng8.3.noarch", "d" * 64),),
    )  # fmt: skip
    record.write(folder, kept)
    return folder


def _summary(tmp_path: Path) -> dict[str, object]:
    """A failed run's summary.json as ``ReleaseReport.to_json`` writes it: every step, the data of those that ran."""
    return {
        "plan": "/p/local.toml", "target": "local", "run_dir": str(tmp_path), "repo_root": str(tmp_path / "repo"),
        "ok": False, "failed_step": "publish", "error": "dnf <refused>", "hint": None, "exit_code": 14,
        "left_out": {"vhd-tool": "upstream not reachable"},
        "proofs": {"xcp-export-server": "4 trials", "vhd-tool-probe": "unpatched failed"},
        "steps": [
            {"name": "sources", "status": "ok", "seconds": 1.0, "detail": "", "data": {
                "left_out": {"vhd-tool": "upstream not reachable"},
                "health": [
                    {"package": "vhd-tool", "ref": "v0.20.0", "patch": "fix.patch", "status": "applies",
                     "kind": "pin"},
                    {"package": "vhd-tool", "ref": "v0.27.0", "patch": "fix.patch", "status": "conflicts",
                     "kind": "upstream rework"},
                    {"package": "xcp-export-server", "ref": "(this project)", "patch": "-",
                     "status": "no patches", "kind": "pin"}]}},
            {"name": "build", "status": "ok", "seconds": 2.0, "detail": "2 build(s)", "data": {
                "xcp-export-server": {"folder": str(_build_folder(tmp_path)), "reused": True,
                                      "artifacts": ["xcp-export-server-1.0-1.xcpng8.3.noarch"],
                                      "reproducible": {"x.rpm": True, "x.src.rpm": False}},
                "gone": {"folder": str(tmp_path / "nowhere"), "reused": False, "artifacts": []}}},
            {"name": "verify", "status": "ok", "seconds": 30.0, "detail": "", "data": {
                "xcp-export-server": {"kind": "export-server", "proof": "4 trials", "problem": "",
                                      "trials": [_trial("complete"), _trial("truncated", received=4 * MiB)]},
                "vhd-tool-probe": {"verdict": "failed", "ref": "v0.20.0", "commit": "f" * 40, "patched": False,
                                   "runs": [{"error": "vhd-tool: Unix.Unix_error(EAGAIN, sendfile)\n  exit 1"}]},
                "proofs": {"xcp-export-server": "4 trials", "vhd-tool-probe": "unpatched failed"}}},
            {"name": "publish", "status": "failed", "seconds": 0.5, "detail": "dnf <refused>", "data": {
                "base": {"added": [], "generations": [3, None]},
                "testing": {"added": ["xcp-export-server-1.0-1.xcpng8.3.noarch"], "generations": [None, 2]}}},
            {"name": "install", "status": "skipped", "seconds": 0.0, "detail": "", "data": {}},
        ],
    }  # fmt: skip


def _written(tmp_path: Path) -> Path:
    """``_summary`` as a run leaves it (summary.json) and its page, rendered from what that file reads back as."""
    (tmp_path / summary.SUMMARY).write_text(json.dumps(_summary(tmp_path), indent=2))
    return report.write_release(tmp_path, summary.load(tmp_path), release="8.3")


def _rendered(tmp_path: Path) -> str:
    """The page for ``_summary``, with what changes from run to run (the time, the folder) made fixed."""
    page = _written(tmp_path)
    html = re.sub(r"generated \d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC", "generated TIME", page.read_text())
    html = re.sub(r"chart-[0-9a-f-]{36}", "chart-ID", html)  # pygal's own random ids and date
    html = re.sub(r"<!--Generated with pygal [^>]*-->", "<!--pygal-->", html)
    return html.replace(str(tmp_path), "TMP")


def test_the_release_page_holds_steps_matrix_builds_charts_and_probes(tmp_path: Path) -> None:
    page = _written(tmp_path)
    html = page.read_text()
    assert page == tmp_path / "report.html"
    assert html.count("<svg") == 2 and "<script" not in html
    assert not re.search(r'(src|href)="https?:', html), "the page must not fetch anything"
    assert 'class="st-applies"' in html and 'class="st-truncated"' in html
    assert "xcp-export-server-1.0-1.xcpng8.3.noarch" in html and "d" * 64 in html and "c" * 40 in html
    assert "sha256:" + "e" * 64 in html
    assert "exit 1" in html and "failed" in html
    assert "dnf &lt;refused&gt;" in html  # escaped
    assert "stream cut" in html and "client stall" in html


def test_the_page_is_the_one_rendered_before_it_was_made_from_typed_objects(tmp_path: Path) -> None:
    """``report_golden.html`` is what the page for this summary looked like when it was rendered from the dict."""
    golden = Path(__file__).with_name("data") / "report_golden.html"
    assert _rendered(tmp_path) == golden.read_text()


def test_the_summary_reads_back_as_the_report_that_wrote_it(tmp_path: Path) -> None:
    """``from_json`` of ``to_json`` is the same summary again: what the page is rendered from is what was run."""
    written = _summary(tmp_path)
    (tmp_path / summary.SUMMARY).write_text(json.dumps(written))
    loaded = summary.load(tmp_path)
    assert loaded.failed_step == "publish" and loaded.exit_code == 14 and not loaded.ok
    assert loaded.sources.data.health is not None and loaded.sources.data.health[1].kind == "upstream rework"
    assert loaded.verify.data.checks["xcp-export-server"].proof == "4 trials"
    assert loaded.publish.data.channels["base"].generations == [3, None]
    assert loaded.install.status == "skipped"
    again = summary.ReleaseReport.from_json(json.loads(json.dumps(loaded.to_json())))
    assert again.to_json() == loaded.to_json()
    assert {k: v for k, v in loaded.to_json().items() if k != "steps"} == {
        k: v for k, v in written.items() if k != "steps"
    }


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    path = tmp_path / "d.raw"
    path.write_bytes(bytes(range(256)) * (8 * 4096))  # 8 MiB
    server = ExportServer([parse_disk(f"d={path}")], "tok")
    thread = threading.Thread(target=server.serve_forever)
    thread.start()
    yield f"{server.url}/export_raw_vdi?vdi=d", path
    server.shutdown()
    thread.join()


def test_the_verifier_records_the_timeline_behind_a_chart(served: tuple[str, Path]) -> None:
    url, path = served
    result = verify.backpressure(
        url, verify.ClientPlan(stalls=(verify.Stall(0.25, 0.5),)), token="tok", expect_disk=path
    )
    assert result.ok
    samples = result.timeline
    assert samples[0] == (0.0, 0) and samples[-1][1] == result.bytes_received == 8 * MiB
    assert all(a[0] <= b[0] and a[1] <= b[1] for a, b in itertools.pairwise(samples))
    chart = charts.trial_chart(json.loads(json.dumps({**vars(result), "stall": 0.5})))
    ((start, end),) = chart.stalls
    # The stall began when a quarter of the body had arrived, and nothing arrived during it.
    assert next(n for t, n in samples if t >= start) == 2 * MiB
    assert not [n for t, n in samples if start < t < end - 0.05]
    assert end - start == pytest.approx(0.5)
