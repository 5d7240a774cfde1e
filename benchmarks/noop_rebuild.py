"""No-op rebuild time: `xcpbuild build` with unchanged inputs must reuse the recorded result in <= 1 s.

Baseline (same run): the first, real build on the local target of the
export-server package (xcpbuild's own definition) and of a package repository
(SPECS/ + SOURCES/, a git checkout) made by the benchmark. Then the same
builds again, in process and as a CLI command, with the engine made
unreachable (DOCKER_HOST pointing nowhere) so a reuse that needed a container would fail instead of looking fast.

    /work/venv/bin/python benchmarks/noop_rebuild.py [--runs N]
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from xcpbuild.config import Settings, load_settings  # noqa: E402
from xcpbuild.pipeline.build import build  # noqa: E402
from xcpbuild.pipeline.sources.package import resolve  # noqa: E402

TARGET_SECONDS = 1.0


BENCH_SPEC = """Name: bench-pkgrepo
Version: 1.0
Release: 1%{?dist}
Summary: A package repository for the no-op rebuild benchmark
License: MIT
BuildArch: noarch
Source0: hello.txt
Patch1000: 0001-greet.patch

%description
Benchmark fixture.

%prep
%setup -q -c -T
cp %{SOURCE0} .
%patch -P 1000 -p1

%install
install -D -m 0644 hello.txt %{buildroot}/usr/share/bench-pkgrepo/hello.txt

%files
/usr/share/bench-pkgrepo/hello.txt
"""
BENCH_PATCH = "--- a/hello.txt\n+++ b/hello.txt\n@@ -1 +1 @@\n-hello\n+hello, world\n"


def make_package_repository(root: Path) -> Path:
    """A package repository (SPECS/ + SOURCES/, a git checkout) that builds completely on `local`."""
    (root / "SPECS").mkdir(parents=True)
    (root / "SOURCES").mkdir()
    (root / "SPECS" / "bench-pkgrepo.spec").write_text(BENCH_SPEC)
    (root / "SOURCES" / "hello.txt").write_text("hello\n")
    (root / "SOURCES" / "0001-greet.patch").write_text(BENCH_PATCH)
    ident = ["-c", "user.name=bench", "-c", "user.email=bench@example.invalid"]
    subprocess.run(["git", "init", "-q", str(root)], check=True)
    subprocess.run(["git", *ident, "-C", str(root), "add", "-A"], check=True)
    subprocess.run(["git", *ident, "-C", str(root), "commit", "-q", "-m", "bench"], check=True)
    return root


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def measure(
    settings: Settings, package: str, work: Path, runs: int, no_engine: str
) -> tuple[float, float, float, float]:
    """(full build, median no-op rebuild in process, median no-op rebuild by the CLI, and its median CPU time);
    no engine after the first."""
    saved = os.environ.get("DOCKER_HOST")
    start = time.perf_counter()
    first = build.build(settings, resolve(settings, package, "local"))
    full = time.perf_counter() - start
    assert not first.reused
    os.environ["DOCKER_HOST"] = no_engine
    try:
        in_process = []
        for _ in range(runs):
            start = time.perf_counter()
            again = build.build(settings, resolve(settings, package, "local"))
            in_process.append(time.perf_counter() - start)
            assert again.reused and again.key == first.key
        env = {**os.environ, "XCPBUILD_WORK": str(work), "XCPBUILD_PROJECT": str(ROOT)}
        cli, cpu = [], []
        for _ in range(runs):
            start, used = time.perf_counter(), _children_cpu()
            done = subprocess.run(
                [sys.executable, "-m", "xcpbuild", "-q", "build", package, "--target", "local", "--json"],
                cwd=ROOT,
                env=env,
                capture_output=True,
                text=True,
                check=False,
            )
            cli.append(time.perf_counter() - start)
            cpu.append(_children_cpu() - used)  # the CLI process and what it ran (rpmspec, git)
            assert done.returncode == 0 and '"reused": true' in done.stdout, done.stderr
    finally:
        if saved is None:
            os.environ.pop("DOCKER_HOST", None)
        else:
            os.environ["DOCKER_HOST"] = saved
    return full, statistics.median(in_process), statistics.median(cli), statistics.median(cpu)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=10)
    args = parser.parse_args()
    verdicts = []
    with tempfile.TemporaryDirectory(prefix="xcpbuild-bench-") as tmp:
        work = Path(tmp) / "work"
        settings = Settings(project_root=ROOT, cache_dir=load_settings(project=ROOT).cache_dir, work_dir=work)
        repository = str(make_package_repository(Path(tmp) / "bench-pkgrepo"))
        no_engine = f"unix://{tmp}/no-engine.sock"
        for label, package in (("xcpbuild definition", "xcp-export-server"), ("package repository", repository)):
            full, med_in, med_cli, med_cpu = measure(settings, package, work, args.runs, no_engine)
            print(f"{label}: full build (baseline, container):        {full:7.3f} s")
            for how, value in (("in process", med_in), ("CLI process", med_cli)):
                print(
                    f"{label}: no-op rebuild, {how} (median of {args.runs}): {value:7.3f} s   "
                    f"ratio to full build {value / full:.3f}"
                )
            print(f"{label}: no-op rebuild, CLI process CPU time (user+sys, median): {med_cpu:7.3f} s")
            verdicts.append(med_cli <= TARGET_SECONDS)
        shutil.rmtree(work, ignore_errors=True)
    print(f"load average at the end: {' '.join(f'{x:.1f}' for x in os.getloadavg())} on {os.cpu_count()} CPUs")
    verdict = "PASS" if all(verdicts) else "FAIL"
    print(f"target: no-op rebuild <= {TARGET_SECONDS:.1f} s (CLI, engine unreachable), both kinds: {verdict}")
    return 0 if verdict == "PASS" else 1


if __name__ == "__main__":
    raise SystemExit(main())
