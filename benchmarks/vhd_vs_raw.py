"""VHD export of a fully allocated disk vs raw export of the same disk, same server, same client.

Usage: python3 benchmarks/vhd_vs_raw.py [--size-mib 2048] [--runs 9]

Both rates count disk bytes per second (the VHD stream's own metadata is not
credited). Target: VHD / raw >= 0.85 (medians of alternating runs). The order
within each pair of runs alternates too (raw first, then VHD first), so neither
side always runs right after the other; the trimmed means are printed as well,
since single runs are bimodal on loopback (benchmarks/README.md).
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
from pathlib import Path

from common import TOKEN, GiB, MiB, fetch, make_disk, median, start_export_server, trimmed_mean, warm


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size-mib", type=int, default=2 * GiB // MiB)
    parser.add_argument("--runs", type=int, default=9)
    parser.add_argument("--workdir", type=Path, default=Path("/var/tmp"))
    args = parser.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="xcpbuild-bench-", dir=args.workdir))
    server = None
    try:
        size = args.size_mib * MiB
        disk = make_disk(tmp / "disk.raw", size)
        server, port = start_export_server({"disk": disk}, tmp / "server.log")
        targets = {fmt: f"/export_raw_vdi?session_id={TOKEN}&vdi=disk&format={fmt}" for fmt in ("raw", "vhd")}
        for target in targets.values():
            fetch(port, target)
        rates: dict[str, list[float]] = {fmt: [] for fmt in targets}
        for run in range(args.runs):
            for fmt, target in list(targets.items())[:: 1 if run % 2 == 0 else -1]:
                warm(disk)
                _, seconds = fetch(port, target)
                rates[fmt].append(size / seconds / MiB)
        print(f"export of a fully allocated, page-cached {args.size_mib} MiB disk, {args.runs} alternating runs")
        for fmt, values in rates.items():
            print(
                f"  {fmt:4s} median {median(values):8.0f} MiB/s of disk, trimmed mean {trimmed_mean(values):.0f}"
                f"  (min {min(values):.0f}, max {max(values):.0f})"
            )
        ratio = median(rates["vhd"]) / median(rates["raw"])
        trimmed = trimmed_mean(rates["vhd"]) / trimmed_mean(rates["raw"])
        best = max(rates["vhd"]) / max(rates["raw"])
        print(
            f"ratio vhd / raw: {ratio:.2f}x of medians  (target >= 0.85x); "
            f"{trimmed:.2f}x of trimmed means, {best:.2f}x of best runs"
        )
        print(f"  load average while measuring: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    finally:
        if server is not None:
            server.stop()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
