"""Delta export (base=) vs full VHD export of the same page-cached disk, and the changed-block scan.

Usage: python3 benchmarks/delta_export.py [--size-mib 4096] [--changed 0.05] [--runs 3]

Two fully allocated disks, the new one a copy of the base with a fraction of its 2 MiB blocks
rewritten at random. Each run starts a fresh server process (so its change-map cache is empty)
and times, end to end from request to last byte: the first delta export (which scans both disks),
a second delta export (the change map reused, as while both files stay unchanged), and the full
VHD export of the new disk. Targets: full / delta >= 5x; the scan alone (in this process, both
disks page-cached) >= 1 GiB/s of disk.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import tempfile
import time
from pathlib import Path

from common import TOKEN, GiB, MiB, fetch, make_disk, median, start_export_server, warm

from xcpbuild import vhd
from xcpbuild.exportserver import delta


def _derive(base: Path, path: Path, blocks: list[int]) -> Path:
    shutil.copyfile(base, path)
    with open(path, "r+b") as f:
        for index in blocks:
            f.seek(index * vhd.BLOCK_SIZE + 4096)
            f.write(os.urandom(4096))
    warm(path)
    return path


def _scan(new: Path, base: Path, size: int) -> tuple[int, float]:
    fds = [os.open(p, os.O_RDONLY) for p in (new, base)]
    try:
        start = time.perf_counter()
        changed = delta.changed_blocks(fds[0], fds[1], size)
        return len(changed), time.perf_counter() - start
    finally:
        for fd in fds:
            os.close(fd)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size-mib", type=int, default=4 * GiB // MiB)
    parser.add_argument("--changed", type=float, default=0.05, help="fraction of blocks changed (default 0.05)")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--workdir", type=Path, default=Path("/var/tmp"))
    args = parser.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="xcpbuild-bench-", dir=args.workdir))
    try:
        size = args.size_mib * MiB
        count = vhd.block_count(size)
        changed = sorted(random.Random(14).sample(range(count), max(1, round(count * args.changed))))
        base = make_disk(tmp / "base.raw", size)
        new = _derive(base, tmp / "new.raw", changed)
        # A change map is cached only for files not written in the last seconds (racy timestamps).
        time.sleep(delta.SETTLED_S + 0.5)
        targets = {
            "full": f"/export_raw_vdi?session_id={TOKEN}&vdi=new&format=vhd",
            "delta": f"/export_raw_vdi?session_id={TOKEN}&vdi=new&base=base&format=vhd",
        }
        times: dict[str, list[float]] = {"full": [], "delta-first": [], "delta-again": []}
        lengths: dict[str, int] = {}
        for run in range(args.runs):
            server, port = start_export_server({"base": base, "new": new}, tmp / f"server-{run}.log")
            try:
                for path in (base, new):
                    warm(path)
                lengths["delta"], seconds = fetch(port, targets["delta"])
                times["delta-first"].append(seconds)
                _, seconds = fetch(port, targets["delta"])
                times["delta-again"].append(seconds)
                lengths["full"], seconds = fetch(port, targets["full"])
                times["full"].append(seconds)
            finally:
                server.stop()
        assert lengths["delta"] == vhd.stream_length(size, len(changed)), "the delta holds exactly the changed blocks"
        scans = [_scan(new, base, size) for _ in range(args.runs)]
        assert all(found == len(changed) for found, _ in scans)

        print(
            f"{args.size_mib} MiB fully allocated, page-cached disks, {len(changed)} of {count} blocks changed "
            f"({100 * len(changed) / count:.1f}%), {args.runs} runs, one fresh server process each"
        )
        for name, values in times.items():
            print(f"  {name:11s} median {median(values):6.3f} s  (min {min(values):.3f}, max {max(values):.3f})")
        print(f"  stream bytes: full {lengths['full']}, delta {lengths['delta']}")
        full = median(times["full"])
        print(
            f"ratio full / delta: {full / median(times['delta-again']):.1f}x with the change map reused "
            f"(target >= 5x); {full / median(times['delta-first']):.1f}x for the first delta (scan included)"
        )
        rate = median([size / seconds / GiB for _, seconds in scans])
        print(f"changed-block scan of both disks: median {rate:.2f} GiB/s of disk (target >= 1 GiB/s)")
        print(f"  load average while measuring: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
