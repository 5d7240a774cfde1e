"""Container overhead: the same rpmbuild of the export-server package in the local image vs on the host.

Both sides build from the same staged inputs (tarball, extra sources, rendered
spec): `rpmbuild -bs` then `rpmbuild -bb`. The host side loads the local
image's macros file so Debian's rpm knows the same EL macros. The container
side counts everything a build pays: create, copy in, both rpmbuilds, copy
out, remove. Prints medians and the ratio container / host.

    /work/venv/bin/python benchmarks/container_overhead.py [--runs N]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from xcpbuild.adapters import container as ctr  # noqa: E402
from xcpbuild.config import load_settings  # noqa: E402
from xcpbuild.pipeline.build import image, spec  # noqa: E402
from xcpbuild.pipeline.sources import project as project_source  # noqa: E402
from xcpbuild.pipeline.sources.package import DefinedPackage, resolve  # noqa: E402

PACKAGE = "xcp-export-server"
TOPDIR = "/home/builder/rpmbuild"


def stage(settings, out: Path) -> tuple[list[Path], spec.RenderedSpec]:  # type: ignore[no-untyped-def]
    resolved = resolve(settings, PACKAGE, "local")
    assert isinstance(resolved, DefinedPackage)
    package = resolved.definition
    fetched = project_source.fetch(settings, package, "local", out)
    files = [fetched.tarball]
    for name in package.extra_sources:
        shutil.copy2(package.extra_sources_dir / name, out / name)
        files.append(out / name)
    return files, spec.render(settings, resolved, version=fetched.version, tarball=fetched.tarball.name)


def on_host(files: list[Path], rendered: spec.RenderedSpec, dist: str) -> float:
    with tempfile.TemporaryDirectory(prefix="xcpbuild-host-") as tmp:
        top = Path(tmp)
        (top / "SOURCES").mkdir()
        (top / "SPECS").mkdir()
        for path in files:
            shutil.copy2(path, top / "SOURCES" / path.name)
        specfile = top / "SPECS" / rendered.filename
        specfile.write_text(rendered.text)
        macros = ROOT / "containers" / "local" / "macros.xcpbuild"
        base = ["rpmbuild", f"--load={macros}", "--define", f"_topdir {top}", "--define", f"dist {dist}"]
        start = time.perf_counter()
        subprocess.run([*base, "-bs", "--nodeps", str(specfile)], check=True, capture_output=True)
        subprocess.run([*base, "-bb", "--nodeps", str(specfile)], check=True, capture_output=True)
        return time.perf_counter() - start


def in_container(client, tag: str, files: list[Path], rendered: spec.RenderedSpec, dist: str, out: Path) -> float:  # type: ignore[no-untyped-def]
    base = ["rpmbuild", "--define", f"_topdir {TOPDIR}", "--define", f"dist {dist}"]
    start = time.perf_counter()
    with ctr.BuildContainer(client, ctr.ContainerOptions(image=tag, workdir=TOPDIR, role="bench")) as box:
        box.put(files, f"{TOPDIR}/SOURCES")
        box.put_bytes({rendered.filename: rendered.text.encode()}, f"{TOPDIR}/SPECS")
        box.exec([*base, "-bs", "--nodeps", f"SPECS/{rendered.filename}"], workdir=TOPDIR, timeout=600)
        box.exec([*base, "-bb", "--nodeps", f"SPECS/{rendered.filename}"], workdir=TOPDIR, timeout=600)
        box.get(f"{TOPDIR}/RPMS", out)
    return time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    settings = load_settings(project=ROOT)
    client = ctr.get_client()
    built = image.build(settings, "local", client=client)
    dist = image.plan(settings, "local").target.dist
    with tempfile.TemporaryDirectory(prefix="xcpbuild-bench-") as tmp:
        files, rendered = stage(settings, Path(tmp))
        host, boxed = [], []
        for run in range(args.runs + 1):
            h = on_host(files, rendered, dist)
            c = in_container(client, built.tag, files, rendered, dist, Path(tmp) / f"out{run}")
            if run:  # the first round warms caches on both sides
                host.append(h)
                boxed.append(c)
    med_host, med_box = statistics.median(host), statistics.median(boxed)
    print(f"rpmbuild -bs + -bb on the host (baseline), median of {args.runs}: {med_host:6.3f} s")
    print(f"same in a local-image container,            median of {args.runs}: {med_box:6.3f} s")
    print(f"container overhead: ratio {med_box / med_host:.2f}, +{med_box - med_host:.3f} s per build")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
