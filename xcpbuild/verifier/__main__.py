"""``python -m xcpbuild.verifier``: download several exports at once, each with the same stall.

The main job's verify step runs this once in a container's network namespace
for all its trials: one light process (standard library and this package only)
instead of one ``xcpbuild`` CLI per trial, and every download on its own
connection at the same time. It prints one JSON list of reports, in the order
of the URLs. The session token comes from ``--token`` or ``XCPBUILD_EXPORT_TOKEN``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import threading
from pathlib import Path

from xcpbuild.verifier import ClientPlan, Report, Stall, backpressure


def _stall(text: str) -> Stall:
    seconds, _, at = text.partition("@")
    try:
        return Stall(at=float(at or 0.5), seconds=float(seconds))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not SECONDS[@FRACTION]") from None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m xcpbuild.verifier", description=(__doc__ or "").splitlines()[0])
    parser.add_argument("urls", nargs="+", metavar="URL")
    parser.add_argument("--stall", type=_stall, action="append", default=[], metavar="SECONDS[@FRACTION]")
    parser.add_argument("--expect-disk", type=Path, help="raw disk every body must equal (VHD decoded)")
    parser.add_argument("--token", default=os.environ.get("XCPBUILD_EXPORT_TOKEN"))
    parser.add_argument("--timeout", type=float, default=600.0, help="no byte for this long while reading: error")
    args = parser.parse_args(argv)
    plan = ClientPlan(stalls=tuple(args.stall), read_timeout=args.timeout)
    reports: list[Report | None] = [None] * len(args.urls)

    def one(index: int, url: str) -> None:
        reports[index] = backpressure(url, plan, token=args.token, expect_disk=args.expect_disk)

    threads = [threading.Thread(target=one, args=(i, url)) for i, url in enumerate(args.urls)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    json.dump([dataclasses.asdict(r) if r is not None else {"outcome": "error"} for r in reports], sys.stdout)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
