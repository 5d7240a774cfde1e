"""No-op rebuild time: `xcpbuild build` with unchanged inputs must reuse the recorded result in <= 1 s.

Baseline (same run): the first, real build of the export-server package on the
local target. Then the same build again, in process and as a CLI command, with
the engine made unreachable (DOCKER_HOST pointing nowhere) so a reuse that
needed a container would fail instead of looking fast.

    /work/venv/bin/python benchmarks/noop_rebuild.py [--runs N]
"""

from __future__ import annotations

import argparse
import os
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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=10)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="xcpbuild-bench-") as tmp:
        work = Path(tmp) / "work"
        settings = Settings(project_root=ROOT, cache_dir=load_settings(project=ROOT).cache_dir, work_dir=work)
        start = time.perf_counter()
        first = build.build(settings, resolve(settings, "xcp-export-server", "local"))
        full = time.perf_counter() - start
        assert not first.reused
        os.environ["DOCKER_HOST"] = f"unix://{tmp}/no-engine.sock"
        in_process = []
        for _ in range(args.runs):
            start = time.perf_counter()
            again = build.build(settings, resolve(settings, "xcp-export-server", "local"))
            in_process.append(time.perf_counter() - start)
            assert again.reused and again.key == first.key
        env = {**os.environ, "XCPBUILD_WORK": str(work), "XCPBUILD_PROJECT": str(ROOT)}
        cli = []
        for _ in range(args.runs):
            start = time.perf_counter()
            done = subprocess.run(
                [sys.executable, "-m", "xcpbuild", "-q", "build", "xcp-export-server", "--target", "local", "--json"],
                cwd=ROOT,
                env=env,
                capture_output=True,
                text=True,
                check=False,
            )
            cli.append(time.perf_counter() - start)
            assert done.returncode == 0 and '"reused": true' in done.stdout, done.stderr
        shutil.rmtree(work, ignore_errors=True)
    med_in, med_cli = statistics.median(in_process), statistics.median(cli)
    print(f"full build (baseline, container):        {full:7.3f} s")
    for label, value in (("in process", med_in), ("CLI process", med_cli)):
        print(
            f"no-op rebuild, {label} (median of {args.runs}): {value:7.3f} s   ratio to full build {value / full:.3f}"
        )
    verdict = "PASS" if med_cli <= TARGET_SECONDS else "FAIL"
    print(f"target: no-op rebuild <= {TARGET_SECONDS:.1f} s (CLI, engine unreachable): {verdict}")
    return 0 if verdict == "PASS" else 1


if __name__ == "__main__":
    raise SystemExit(main())
