"""Publishing a channel from a koji tag: xcpbuild's parallel, cached downloads vs a loop of `koji download-build`.

    XCPBUILD_KOJI_SOURCE=/path/to/koji-checkout python benchmarks/koji_publish.py [--builds 200] [--workers 8]

1. Brings up the real koji hub of the integration tests (tests/integration/koji_hub) on 127.0.0.1.
2. Makes BUILDS small builds (SRPM + noarch RPM + build.log, rpmbuild), imports them with
   `xcpbuild koji import` logic and tags them into v8.3-testing.
3. Cold downloads of the tag's latest builds, alternating runs into empty directories:
   the anchor is one `koji download-build NVR` per build, in a loop (the koji CLI of the
   checkout under Debian's python3, whose rpm bindings it needs to check the downloads; the same
   client code as PyPI's koji, the same hub and files server); xcpbuild is `channel.tag_rpms`
   + `channel.fetch` (three hub round trips, WORKERS parallel downloads). Prints both medians
   and the ratio (target >= 3x).
4. A whole `publish_tag` into an unsigned channel (metadata + dnf check), then the same again
   with nothing new (target <= 2 s: listing the tag and comparing with the live channel).

The default is the 200 builds the issue names: making and importing them takes about 2.5
minutes on 2 cores, the whole run about 4.5 minutes with --repeat 1; --builds 40 is quicker.
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

from tests.fixtures.rpms import make_rpm, make_srpm  # noqa: E402
from tests.integration.koji_hub import SYSTEM_PYTHON, KojiHub, missing_prerequisites  # noqa: E402
from xcpbuild.adapters import koji as kojilib  # noqa: E402
from xcpbuild.pipeline.koji import channel, importer  # noqa: E402


def make_builds(base: Path, count: int) -> list[Path]:
    folders = []
    for i in range(count):
        name = f"bench{i:04d}"
        folder = base / name
        folder.mkdir(parents=True)
        scratch = base / f".work-{name}"
        # Some weight in each RPM so downloads are not all round trips.
        files = {f"/usr/share/{name}/data": os.urandom(96 * 1024).hex()}
        shutil.copy(make_srpm(scratch, name, "1.0", "1", files=files), folder)
        shutil.copy(make_rpm(scratch, name, "1.0", "1", files=files), folder)
        (folder / "build.log").write_text(f"built {name}\n")
        shutil.rmtree(scratch)
        folders.append(folder)
    return folders


def koji_cli_loop(source: Path, profile: Path, nvrs: list[str], dest: Path) -> float:
    # The koji CLI checks each download with rpm's python bindings, which only Debian's python3 has:
    # run the checkout's CLI there (the same client code as PyPI's koji).
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": f"{source}:{source / 'cli'}", "HOME": str(dest)}
    dest.mkdir(parents=True)
    started = time.perf_counter()
    for nvr in nvrs:
        subprocess.run(
            [
                str(SYSTEM_PYTHON),
                str(source / "cli" / "koji"),
                "--config",
                str(profile),
                "-p",
                "fixture",
                "download-build",
                "--noprogress",
                nvr,
            ],
            cwd=dest,
            check=True,
            stdout=subprocess.DEVNULL,
            env=env,
        )
    return time.perf_counter() - started


def xcpbuild_fetch(hub: kojilib.Hub, tag: str, dest: Path, workers: int) -> float:
    started = time.perf_counter()
    _, rpms = channel.tag_rpms(hub, tag)
    channel.fetch(hub, rpms, dest, workers)
    return time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--builds", type=int, default=200)
    parser.add_argument("--workers", type=int, default=channel.DEFAULT_WORKERS)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    source = os.environ.get("XCPBUILD_KOJI_SOURCE")
    why = missing_prerequisites(Path(source) if source else None)
    if why:
        print(f"needs {why}", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="xcpbuild-bench-koji-") as tmp:
        work = Path(tmp)
        hub_fixture = KojiHub(Path(str(source)), work / "hub").start()
        try:
            session = hub_fixture.session()
            session.grantCGAccess("kojiadmin", importer.CONTENT_GENERATOR, create=True)
            session.logout()
            t0 = time.perf_counter()
            folders = make_builds(work / "builds", args.builds)
            hub_fixture.add_packages([f.name for f in folders])
            profile = hub_fixture.write_profile(work / "conf")
            hub = kojilib.connect(kojilib.load_profile("fixture", profile))
            tag = hub_fixture.tag_name("testing")
            nvrs = [importer.import_build(hub, [f], tag).nvr for f in folders]
            print(f"set-up: {args.builds} builds made, imported and tagged in {time.perf_counter() - t0:.1f}s")

            anchor, ours = [], []
            for i in range(args.repeat):
                anchor.append(koji_cli_loop(Path(str(source)), profile, nvrs, work / f"cli-{i}"))
                ours.append(xcpbuild_fetch(hub, tag, work / f"cache-{i}", args.workers))
            a, o = statistics.median(anchor), statistics.median(ours)
            print(f"cold download of {len(nvrs)} builds ({2 * len(nvrs)} RPMs), median of {args.repeat}:")
            print(f"  koji download-build loop : {a:7.2f}s")
            print(f"  xcpbuild ({args.workers} workers)    : {o:7.2f}s")
            print(f"  speed-up                 : {a / o:7.2f}x  (target >= 3x)")

            repo = work / "repo"
            cache = work / "publish-cache"
            started = time.perf_counter()
            first = channel.publish_tag(hub, tag, repo, "8.3", "testing", cache_dir=cache)
            print(
                f"first publish_tag (download, metadata, dnf check): {time.perf_counter() - started:.2f}s, "
                f"{first.downloaded} downloaded"
            )
            started = time.perf_counter()
            again = channel.publish_tag(hub, tag, repo, "8.3", "testing", cache_dir=cache)
            seconds = time.perf_counter() - started
            assert again.publish is None and again.downloaded == 0
            print(f"re-publish with nothing new: {seconds:.2f}s  (target <= 2 s)")
            hub.close()
        finally:
            hub_fixture.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
