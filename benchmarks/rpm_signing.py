"""Signing RPMs: rpmsign (a gpg process per signature) vs rpmsig (long-lived gpg-agent sessions), alternating.

    python benchmarks/rpm_signing.py [--count 500] [--rounds 3] [--rpmv3]

Takes COUNT of the cached benchmark RPMs (``repodata.py`` builds them), and per
round signs fresh copies of them once with ``rpmsign.sign`` (the anchor: one
rpmsign per core) and once with ``rpmsig.sign`` (the same signatures: the
header signature, and with ``--rpmv3`` the header+payload one too; these
packages have a payload digest, so rpm's own rule adds none by default),
alternating so both see the same machine load. Every
signed set is verified with ``rpmsign.check`` (rpmkeys against the public key
alone) outside the timing. Prints each round, the medians and the ratio, and
the CPU time spent: our process, its children (rpmsign, gpg, or the agent
sessions) and the key's gpg-agent daemon, which rpmsign's gpg processes use but
which is not our child (read from /proc). Divided by the cores, that CPU time is
what the signing would take on an idle machine.
"""

from __future__ import annotations

import argparse
import functools
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from repodata import cached_rpms, load  # noqa: E402

from tests.fixtures.gpgkeys import make_key, stop_agent  # noqa: E402
from xcpbuild.adapters import rpmsig, rpmsign  # noqa: E402
from xcpbuild.adapters.gpg import SigningKey  # noqa: E402


def daemon_cpu(home: Path) -> float:
    """CPU seconds used so far by the gpg-agent daemon serving ``home`` (0 if none runs)."""
    total = 0.0
    for proc in Path("/proc").iterdir():
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
            if argv and argv[0].endswith(b"gpg-agent") and b"--daemon" in argv and str(home).encode() in argv:
                fields = (proc / "stat").read_text().rsplit(")", 1)[1].split()
                total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        except (OSError, ValueError):
            continue
    return total


def timed(
    sign: Callable[[Sequence[Path], SigningKey], None], rpms: list[Path], work: Path, key: SigningKey
) -> tuple[float, float]:
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir()
    copies = []
    for rpm in rpms:
        shutil.copyfile(rpm, work / rpm.name)
        copies.append(work / rpm.name)
    before, daemon, started = os.times(), daemon_cpu(key.home), time.perf_counter()
    sign(copies, key)
    wall, after = time.perf_counter() - started, os.times()
    cpu = sum(after[:4]) - sum(before[:4]) + daemon_cpu(key.home) - daemon
    problems = rpmsign.check(copies, key.public_key, key.short_id)
    assert not problems, problems[:3]
    return wall, cpu


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--rpmv3", action="store_true", help="two signatures per package, as rpmsign --rpmv3")
    args = parser.parse_args()
    rpms = cached_rpms(2000)[: args.count]
    signatures = "header and header+payload (--rpmv3)" if args.rpmv3 else "header only (rpm's default here)"
    print(f"cores: {len(os.sched_getaffinity(0))}, signatures: {signatures}, load average at start: {load()}")
    with tempfile.TemporaryDirectory(prefix="xcpbuild-bench-") as tmp:
        work = Path(tmp)
        key = make_key(work / "key")
        results: dict[str, list[float]] = {"rpmsign": [], "rpmsig": []}
        cpus: dict[str, list[float]] = {"rpmsign": [], "rpmsig": []}
        try:
            for round_ in range(args.rounds):
                for name, sign in (("rpmsign", rpmsign.sign), ("rpmsig", rpmsig.sign)):
                    wall, cpu = timed(functools.partial(sign, rpmv3=args.rpmv3), rpms, work / name, key)
                    results[name].append(wall)
                    cpus[name].append(cpu)
                    print(f"round {round_ + 1}: {name:8} {wall:6.2f}s wall, {cpu:6.2f}s CPU, load {load()}")
        finally:
            stop_agent(key)
    old, new = statistics.median(results["rpmsign"]), statistics.median(results["rpmsig"])
    print(f"signing {args.count} RPMs, median of {args.rounds}: rpmsign {old:.2f}s, rpmsig {new:.2f}s")
    print(f"  ratio: {old / new:.2f}x faster ({1000 * new / args.count:.1f} ms per package)")
    old_cpu, new_cpu = statistics.median(cpus["rpmsign"]), statistics.median(cpus["rpmsig"])
    cores = len(os.sched_getaffinity(0))
    print(
        f"CPU per package: rpmsign {1000 * old_cpu / args.count:.1f} ms, rpmsig {1000 * new_cpu / args.count:.1f} ms "
        f"({old_cpu / new_cpu:.2f}x less); 2,000 packages on {cores} idle cores: "
        f"rpmsign >= {2000 * old_cpu / args.count / cores:.1f}s, rpmsig >= {2000 * new_cpu / args.count / cores:.1f}s"
    )
    print(f"load average at the end: {load()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
