"""What report.html adds to a release run: rendering the page, in a fresh process, against the 1 s budget.

The summary is a release's shape at full size: four trials of a 48 MiB export with a 10 s stall,
their timelines recorded by the real verifier's ``Timeline`` at its real resolution (a recorded
pace, not a real download, so the benchmark takes seconds), a patch-health table and a build
record. Each run starts a new Python process that has imported what `xcpbuild release` has by
then, and times reading summary.json back (``summary.load``) and ``report.write_release`` with
pygal's import and the template's compilation; the baseline, measured in the same run, is the
same process writing summary.json alone. Prints the medians and the ratio of the added time to
the budget (target: <= 1.0).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BUDGET_S = 1.0

# The release module is imported first, as `xcpbuild release` has by then; pygal's import is timed.
CHILD = r"""
import json, sys, time
from pathlib import Path
import xcpbuild.pipeline.release.release
started = time.perf_counter()
summary = json.loads(Path(sys.argv[1]).read_text())
out = Path(sys.argv[2])
out.mkdir(parents=True, exist_ok=True)
(out / "summary.json").write_text(json.dumps(summary, indent=2))
if sys.argv[3] == "report":
    from xcpbuild.pipeline.release import report, summary as typed
    report.write_release(out, typed.load(out), release="8.3")
print(time.perf_counter() - started)
"""


def _timeline(policy: str, total: int) -> tuple[list[tuple[float, int]], int, float]:
    from xcpbuild.verifier.timeline import Timeline

    clock = [0.0]
    timeline = Timeline(clock=lambda: clock[0])
    received, chunk, stall_at = 0, 65536, int(0.3 * total)
    end = total if policy == "wait" else stall_at + 2 * 1024 * 1024
    while received < end:
        if received == stall_at:
            clock[0] += 10.0
        clock[0] += chunk / 60e6  # ~60 MB/s: the verifier's small receive buffer on loopback
        n = min(chunk, end - received, stall_at - received if received < stall_at else chunk)
        received += n
        timeline.add(n)
    return timeline.samples(), received, clock[0]


def summary(tmp: Path) -> dict[str, object]:
    total = 48 * 1024 * 1024 + 1536
    trials = []
    for policy in ("wait", "legacy-retry"):
        for fmt in ("raw", "vhd"):
            samples, received, seconds = _timeline(policy, total)
            trials.append({
                "policy": policy, "fmt": fmt, "expected": "survive" if policy == "wait" else "fail",
                "outcome": "complete" if policy == "wait" else "truncated", "match": policy == "wait",
                "bytes_received": received, "content_length": total, "passed": True, "detail": "",
                "stall": 10.0, "seconds": seconds, "events": [f"stalled 10 s at byte {int(0.3 * total)}"],
                "timeline": samples,
            })  # fmt: skip
    health = [{"package": "vhd-tool", "ref": "v0.20.0", "patch": "fix.patch", "status": "applies"}]
    return {
        "plan": "local.toml", "target": "local", "run_dir": str(tmp), "repo_root": str(tmp / "repo"), "ok": True,
        "failed_step": None, "error": None, "hint": None,
        "steps": [
            {"name": "sources", "status": "ok", "seconds": 1.0, "detail": "", "data": {"health": health}},
            {"name": "verify", "status": "ok", "seconds": 45.0, "detail": "",
             "data": {"xcp-export-server": {"trials": trials}}},
        ],
    }  # fmt: skip


def _run(summary_file: Path, out: Path, mode: str) -> float:
    done = subprocess.run(
        [sys.executable, "-c", CHILD, str(summary_file), str(out), mode],
        cwd=ROOT, capture_output=True, text=True, check=True,
    )  # fmt: skip
    return float(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    with tempfile.TemporaryDirectory(prefix="xcpbuild-bench-report-") as scratch:
        tmp = Path(scratch)
        summary_file = tmp / "input.json"
        summary_file.write_text(json.dumps(summary(tmp)))
        base, full = [], []
        for index in range(args.runs):  # alternate, so load changes hit both sides alike
            base.append(_run(summary_file, tmp / f"b{index}", "summary"))
            full.append(_run(summary_file, tmp / f"r{index}", "report"))
        size = (tmp / "r0" / "report.html").stat().st_size
    added = statistics.median(full) - statistics.median(base)
    print(f"summary.json only: median {statistics.median(base) * 1000:.0f} ms")
    print(f"with report.html:  median {statistics.median(full) * 1000:.0f} ms (page {size / 1024:.0f} KiB, 4 charts)")
    print(f"added by the report: {added * 1000:.0f} ms = {added / BUDGET_S:.2f}x the {BUDGET_S:g} s budget (<= 1.0)")


if __name__ == "__main__":
    main()
