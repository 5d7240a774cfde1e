"""Repodata for 2,000 generated RPMs: xcpbuild vs the createrepo_c CLI, same tree, same run.

    python benchmarks/repodata.py [--count 2000] [--repeat 5] [--rpmv3]

1. Builds COUNT small noarch RPMs once (one rpmbuild run, cached by count under
   $XCPBUILD_CACHE or ~/.cache/xcpbuild/bench-rpms).
2. Full metadata generation on one Packages/ tree, alternating runs: the
   createrepo_c CLI (``--no-database --general-compress-type=gz``, the settings
   xcpbuild writes: gz XML, no sqlite) vs ``adapters.createrepo.build_repodata``.
   Prints both medians and the ratio (target <= 1.0).
3. Publishes the COUNT packages into a signed repo with ``xcpbuild publish``
   (target <= 20 s: signing, verifying, metadata and dnf's test transaction;
   these RPMs carry a payload digest, so each gets the header signature alone
   unless ``--rpmv3`` asks for the header+payload one too, as rpmsign does),
   then times publishing one more RPM: metadata alone, and the whole publish
   minus signing (target <= 0.5 s plus signing). The whole publish also runs
   dnf against the staged repo, which is shown on its own line: the wait for
   dnf's checks once the staged repo is ready (dnf's start-up and the live
   packages' part of the upgrade check overlap the publish before that).

``--over-base`` measures XCP-ng's own shape instead: the COUNT packages are the frozen base
channel, and the one-RPM publishes go to testing (two packages already live there), so dnf's
checks load base beside the small testing channel.

The load average is printed at the start and the end: the machine is shared.
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

from tests.fixtures.gpgkeys import make_key, stop_agent  # noqa: E402
from tests.fixtures.rpms import make_many_rpms, make_rpm  # noqa: E402
from xcpbuild.adapters import createrepo  # noqa: E402
from xcpbuild.pipeline.publish import publish  # noqa: E402


def cached_rpms(count: int) -> list[Path]:
    cache = Path(os.environ.get("XCPBUILD_CACHE", Path.home() / ".cache" / "xcpbuild")) / "bench-rpms" / str(count)
    done = cache / "done"
    if not done.exists():
        shutil.rmtree(cache, ignore_errors=True)
        cache.mkdir(parents=True)
        started = time.monotonic()
        make_many_rpms(cache, "bench", count)
        print(f"built {count} RPMs in {time.monotonic() - started:.1f}s (cached in {cache})")
        done.touch()
    return sorted(
        (cache / f"many-bench-{count}" / "rpmbuild" / "RPMS" / "noarch").glob("bench-[0-9][0-9][0-9][0-9][0-9]-*.rpm")
    )


def load() -> str:
    return " ".join(f"{value:.1f}" for value in os.getloadavg())


def median_time(func: object, repeat: int) -> float:
    samples = []
    for _ in range(repeat):
        started = time.perf_counter()
        func()  # type: ignore[operator]
        samples.append(time.perf_counter() - started)
    return statistics.median(samples)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=2000)
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--metadata-only", action="store_true", help="skip the publish part")
    parser.add_argument("--rpmv3", action="store_true", help="publish with --rpmv3: two signatures per package")
    parser.add_argument("--over-base", action="store_true", help="the COUNT RPMs in base, one-RPM publishes to testing")
    args = parser.parse_args()
    rpms = cached_rpms(args.count)
    assert len(rpms) == args.count, len(rpms)
    print(f"cores: {len(os.sched_getaffinity(0))}, load average at start: {load()}")

    with tempfile.TemporaryDirectory(prefix="xcpbuild-bench-") as tmp:
        work = Path(tmp)
        tree = work / "tree"
        (tree / "Packages").mkdir(parents=True)
        for rpm in rpms:
            os.link(rpm, tree / "Packages" / rpm.name)
        hrefs = sorted(f"Packages/{rpm.name}" for rpm in rpms)

        def cli() -> None:
            out = work / "cli"
            shutil.rmtree(out, ignore_errors=True)
            out.mkdir()
            subprocess.run(
                ["createrepo_c", "--no-database", "--general-compress-type=gz", "--outputdir", str(out), str(tree)],
                check=True,
                stdout=subprocess.DEVNULL,
            )

        def ours() -> None:
            out = work / "ours"
            shutil.rmtree(out, ignore_errors=True)
            createrepo.build_repodata(tree, hrefs, out / "repodata")

        cli()
        ours()  # warm the page cache for both
        cli_times, our_times = [], []
        for _ in range(args.repeat):
            cli_times.append(median_time(cli, 1))
            our_times.append(median_time(ours, 1))
        cli_median, our_median = statistics.median(cli_times), statistics.median(our_times)
        version = subprocess.run(
            ["createrepo_c", "--version"], capture_output=True, text=True, check=True
        ).stdout.strip()
        print(f"full metadata, {args.count} RPMs, median of {args.repeat}:")
        print(f"  createrepo_c CLI ({version}): {cli_median:.3f}s")
        print(f"  xcpbuild build_repodata:      {our_median:.3f}s")
        print(f"  ratio: {our_median / cli_median:.2f}x (target <= 1.0x)")

        if args.metadata_only:
            print(f"load average at the end: {load()}")
            return 0
        key = make_key(work / "key")
        try:
            repo = work / "repo"
            started = time.monotonic()
            initial_channel = "base" if args.over_base else "testing"
            first = publish.publish(rpms, repo, "8.3", initial_channel, key=key, rpmv3=args.rpmv3)
            print(
                f"initial signed publish of {args.count} RPMs{' (--rpmv3)' if args.rpmv3 else ''}: "
                f"{time.monotonic() - started:.1f}s "
                f"(signing {first.repos[0].sign_seconds:.1f}s, metadata {first.repos[0].metadata_seconds:.2f}s, "
                f"dnf {first.repos[0].check_seconds:.1f}s; target <= 20s)"
            )
            if args.over_base:  # testing with live packages of its own, so the upgrade check runs too
                for name in ("testing-a", "testing-b"):
                    publish.publish([make_rpm(work / "extra", name)], repo, "8.3", "testing", key=key)
            extras = [make_rpm(work / "extra", "bench-extra", f"1.{i}") for i in range(args.repeat)]
            meta, total, sign, check, reused = [], [], [], [], []
            for extra in extras:
                report = publish.publish([extra], repo, "8.3", "testing", key=key, rpmv3=args.rpmv3)
                part = report.repos[0]
                assert part.packages_read == 1, part
                meta.append(part.metadata_seconds)
                reused.append(part.packages_reused)
                total.append(report.seconds - part.sign_seconds)
                sign.append(part.sign_seconds)
                check.append(part.check_seconds)
            where = f"testing over a base of {args.count}" if args.over_base else str(args.count)
            print(f"add one RPM to {where}, median of {len(extras)}:")
            print(f"  metadata (1 read, {max(reused)} reused): {statistics.median(meta):.3f}s")
            print(f"  whole publish minus signing:    {statistics.median(total):.3f}s (target <= 0.5s)")
            print(f"    each, in order:                {' '.join(f'{t:.3f}' for t in total)}")
            print(f"    of which the dnf check:        {statistics.median(check):.3f}s")
            rest = statistics.median(t - c for t, c in zip(total, check, strict=True))
            print(f"  whole publish minus signing and the dnf check: {rest:.3f}s")
            print(f"  signing one RPM:                 {statistics.median(sign):.3f}s")
        finally:
            stop_agent(key)
    print(f"load average at the end: {load()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
