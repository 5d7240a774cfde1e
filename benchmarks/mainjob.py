"""The main job's wall time with vhd-tool in it: warm re-runs (target <= 30 s) and, with --cold, a cold run (<= 5 min).

Runs ``xcpbuild release`` as a user would (a CLI process, the embedded plan) on a copy of this
project, in a work folder of its own, with vhd-tool's upstream given by ``--upstream`` (default:
the stand-in upstream of the tests, tests/fixtures/vhd_tool_standin.py; pass a real vhd-tool
clone or mirror to measure the real thing). In order:

1. the first run (builds everything; with --cold also every image, see below);
2. ``--runs`` warm re-runs: images and builds cached, nothing new to publish;
3. baseline, same process: ``--runs`` warm re-runs of the same job with vhd-tool left out
   (the plan's upstream is a file:// that does not exist), i.e. the job as it was without it.

It prints each run's total and per-step seconds, then the ratios: warm with vhd-tool over the
30 s target and over the baseline, and the cold run over 5 min.

--cold: nothing cached is found. The run gets a fresh XCPBUILD_CACHE, and the copy's image
inputs are changed in ways that change no content (a comment in containers/local/Dockerfile and
containers/probe-ocaml/Dockerfile, the base's package list in another order), so every tag
is new: the mmdebstrap base, the local image and the probe image are all made from nothing
(Debian packages come from this machine's mirror, as set-up installs them). The images it made
are removed at the end, by their tags (no other image is touched).

    .venv/bin/python benchmarks/mainjob.py [--runs 3] [--upstream PATH] [--cold]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.fixtures.vhd_tool_standin import make_standin  # noqa: E402

WARM_TARGET = 30.0
COLD_TARGET = 300.0
STEPS = ("sources", "build", "verify", "publish", "install")
PLAN_URL = "https://github.com/xapi-project/vhd-tool.git"


class _Load:
    """The 1-minute load average sampled every few seconds while a run goes (other jobs share the cores)."""

    def __init__(self) -> None:
        self.samples: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while True:
            self.samples.append(os.getloadavg()[0])
            if self._stop.wait(5.0):
                return

    def __enter__(self) -> _Load:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()

    def __str__(self) -> str:
        return f"{min(self.samples):.1f} to {max(self.samples):.1f} (mean {statistics.mean(self.samples):.1f})"


def _release(project: Path, env: dict[str, str], args: list[str]) -> tuple[float, dict[str, Any], str]:
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "xcpbuild", "release", "--json", *args],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    seconds = time.perf_counter() - start
    report = json.loads(done.stdout) if done.stdout.strip() else {}
    if done.returncode != 0 or not report.get("ok"):
        sys.exit(f"release failed ({done.returncode}): {done.stderr.strip()[-2000:]}")
    return seconds, report, done.stderr


_DONE = re.compile(r"^(?P<indent> *)✓ (?P<name>.*) \((?P<seconds>[0-9.]+)s\)$")


def _breakdown(stderr: str, at_least: float) -> list[str]:
    """The finished steps of a run's log that took ``at_least`` seconds, in the order they ended."""
    rows = []
    for line in stderr.splitlines():
        found = _DONE.match(line)
        if found and float(found["seconds"]) >= at_least:
            rows.append(f"  {found['indent']}{float(found['seconds']):>6.1f} s  {found['name'][:110]}")
    return rows


def _row(label: str, seconds: float, report: dict[str, Any]) -> str:
    steps = {s["name"]: s["seconds"] for s in report["steps"]}
    left = ", ".join(report.get("left_out", {})) or "-"
    cells = " ".join(f"{steps.get(name, 0.0):>7.1f}" for name in STEPS)
    return f"{label:<28} {seconds:>7.1f} {cells}   left out: {left}"


def _salt(project: Path) -> None:
    """New tags for the same image content: nothing the engine or a cache holds is found."""
    stamp = f"# benchmark {time.time_ns()}\n"
    for name in ("local", "probe-ocaml"):
        dockerfile = project / "containers" / name / "Dockerfile"
        dockerfile.write_text(dockerfile.read_text() + stamp)
    target = project / "containers" / "local" / "target.toml"
    text = target.read_text()
    found = re.search(r"^debootstrap_include = \[(.*)\]$", text, re.MULTILINE)
    assert found, "containers/local/target.toml has no debootstrap_include"
    reordered = ", ".join(reversed([p.strip() for p in found[1].split(",")]))
    target.write_text(text.replace(found[0], f"debootstrap_include = [{reordered}]"))


def _image_tags(project: Path, cache: Path, work: Path) -> list[str]:
    """The tags of the images a run of ``project`` uses: the local image, its base, the probe image."""
    from xcpbuild.config import Settings
    from xcpbuild.pipeline.build import image
    from xcpbuild.pipeline.verify import probe, probe_image

    settings = Settings(project_root=project, cache_dir=cache, work_dir=work)
    planned = image.plan(settings, "local")
    _, recipe = probe.load_recipe(settings, "vhd-tool")
    # Children first, so removing them frees their layers.
    tags = [probe_image.probe_tag(settings, recipe, planned.tag), planned.tag]
    return tags + ([planned.base.tag] if planned.base else [])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3, help="warm runs of each kind (default 3)")
    parser.add_argument("--upstream", help="a real vhd-tool clone or mirror (default: the stand-in)")
    parser.add_argument("--cold", action="store_true", help="make the first run cold: no image, no cache")
    parser.add_argument("--log", type=Path, help="write the first run's log (stderr) to this file")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="xcpbuild-bench-mainjob-") as tmp_name:
        tmp = Path(tmp_name)
        standin = make_standin(tmp / "standin")
        project = standin.project
        upstream = args.upstream or str(standin.upstream)
        if args.upstream:  # the real thing: this project's own definition, series and probe
            subprocess.run(["rm", "-rf", str(project)], check=True)
            subprocess.run(["cp", "-a", str(ROOT), str(project)], check=True)
            subprocess.run(["rm", "-rf", str(project / "_work"), str(project / ".venv")], check=True)
        env = dict(os.environ, XCPBUILD_PROJECT=str(project), XCPBUILD_WORK=str(tmp / "work"))
        made: list[str] = []
        if args.cold:
            env["XCPBUILD_CACHE"] = str(tmp / "cache")
            _salt(project)
            made = _image_tags(project, tmp / "cache", tmp / "work")
            for tag in made:
                found = subprocess.run(["docker", "image", "inspect", tag], capture_output=True, check=False)
                assert found.returncode != 0, f"{tag} already exists: the run would not be cold"
        with_tool = ["--upstream", f"vhd-tool={upstream}"]
        plan = tmp / "without-vhd-tool.toml"
        plan_text = (ROOT / "xcpbuild" / "plans" / "local.toml").read_text()
        plan.write_text(plan_text.replace(PLAN_URL, f"file://{tmp}/unreachable/vhd-tool.git"))
        without_tool = ["--plan", str(plan)]

        print(f"{'run':<28} {'total':>7} " + " ".join(f"{s:>7}" for s in STEPS))
        try:
            with _Load() as load:
                first, report, first_log = _release(project, env, with_tool)
            print(_row("cold run" if args.cold else "first run", first, report))
            print(f"  load average during it: {load}")
            print("\n".join(_breakdown(first_log, 2.0)))
            if args.log:
                args.log.write_text(first_log)
            warm = []
            for index in range(args.runs):
                seconds, report, _ = _release(project, env, with_tool)
                assert not report["left_out"], report["left_out"]
                warm.append(seconds)
                print(_row(f"warm, with vhd-tool #{index + 1}", seconds, report))
            baseline = []
            for index in range(args.runs):
                seconds, report, _ = _release(project, env, without_tool)
                assert "vhd-tool" in report["left_out"], report["left_out"]
                baseline.append(seconds)
                print(_row(f"warm, without vhd-tool #{index + 1}", seconds, report))
        finally:
            if made:
                subprocess.run(["docker", "image", "rm", *made], capture_output=True, check=False)
        with_median, without_median = statistics.median(warm), statistics.median(baseline)
        print()
        print(f"warm with vhd-tool (median of {len(warm)}):    {with_median:.1f} s")
        print(f"warm without vhd-tool (median of {len(baseline)}): {without_median:.1f} s (baseline, same run)")
        print(f"ratio with/without vhd-tool:            {with_median / without_median:.2f}x")
        print(f"ratio warm/target ({WARM_TARGET:.0f} s):              {with_median / WARM_TARGET:.2f}x")
        if args.cold:
            print(f"cold run:                               {first:.1f} s")
            print(f"ratio cold/target ({COLD_TARGET:.0f} s):             {first / COLD_TARGET:.2f}x")
        print(f"load average at the end: {' '.join(f'{x:.1f}' for x in os.getloadavg())} (2 cores shared)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
