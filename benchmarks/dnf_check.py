"""The publish's dnf check of COUNT new signed packages: dnf's CLI test transaction vs ``dnf.check_install``.

    python benchmarks/dnf_check.py [--count 2000] [--repeat 2] [--repo ROOT --public-key KEY]

The anchor is what the publish ran before: ``dnf -y install --setopt=tsflags=test``
with gpgcheck and repo_gpgcheck on, which starts one ``rpmkeys`` per package.
``check_install`` runs the same checks through dnf's library (see
``adapters/dnf_check_helper.py``). Both run against the same signed repository,
alternating; prints the medians and the ratio. Without ``--repo`` the COUNT
cached benchmark RPMs (see repodata.py) are published signed first, without the
dnf check; ``--repo`` reuses such a published root (``testing`` channel of 8.3)
and ``--public-key`` its key.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.repodata import cached_rpms, load  # noqa: E402
from tests.fixtures.gpgkeys import make_key, stop_agent  # noqa: E402
from xcpbuild.adapters import dnf  # noqa: E402
from xcpbuild.pipeline.publish import publish  # noqa: E402
from xcpbuild.pipeline.publish import repo as repolib  # noqa: E402


def cli_check(repo: Path, names: list[str], public_key: Path) -> float:
    with tempfile.TemporaryDirectory(prefix="xcpbuild-bench-dnf-") as tmp:
        argv = dnf.base_argv(Path(tmp), "8.3", [dnf.Repo("staged", repo)], public_key, tsflags="nodocs,test")
        started = time.perf_counter()
        subprocess.run([*argv, "install", *names], check=True, capture_output=True)
        return time.perf_counter() - started


def lib_check(repo: Path, names: list[str], public_key: Path) -> float:
    started = time.perf_counter()
    result = dnf.check_install([dnf.Repo("staged", repo)], names, public_key, "8.3")
    assert len(result.installed) == len(names), len(result.installed)
    return time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=2000)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--repo", type=Path, help="a root already published by this benchmark")
    parser.add_argument("--public-key", type=Path)
    args = parser.parse_args()
    print(f"load average at start: {load()}")
    with tempfile.TemporaryDirectory(prefix="xcpbuild-bench-") as tmp:
        key = None
        if args.repo is None:
            key = make_key(Path(tmp) / "key")
            args.repo, args.public_key = Path(tmp) / "repo", key.public_key
            started = time.monotonic()
            publish.publish(cached_rpms(args.count), args.repo, "8.3", "testing", key=key, dnf_check=False)
            print(f"published {args.count} signed RPMs (no dnf check) in {time.monotonic() - started:.1f}s")
        try:
            binary, _ = repolib.repo_dirs(args.repo, "8.3", "testing")
            generation = repolib.current_generation(binary)
            assert generation is not None
            names = sorted(f"{p.name}-{p.version}-{p.release}.{p.arch}" for p in generation.packages)
            cli, lib = [], []
            for _ in range(args.repeat):
                cli.append(cli_check(binary.path, names, args.public_key))
                lib.append(lib_check(binary.path, names, args.public_key))
                print(f"  dnf CLI {cli[-1]:.1f}s, check_install {lib[-1]:.1f}s (load {load()})")
        finally:
            if key is not None:
                stop_agent(key)
    print(f"dnf check of {len(names)} signed packages, median of {args.repeat} alternating runs:")
    print(f"  dnf CLI test transaction (anchor): {statistics.median(cli):.2f}s")
    print(f"  dnf.check_install:                 {statistics.median(lib):.2f}s")
    print(f"  {statistics.median(cli) / statistics.median(lib):.2f}x faster")
    print(f"load average at the end: {load()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
