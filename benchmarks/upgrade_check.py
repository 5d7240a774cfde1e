"""What the upgrade check adds to publishing an update to a small channel (target: <= 2 s).

A channel of ``--packages`` live RPMs (one depends on another) gets one compatible update per
run, published with the full checks; the baseline is the same publish in the same run with the
upgrade check given no live package (no live install, no upgrade; its repoclosure still runs in
the install check's process, as it shares that process), so it still has the new-package dnf
install. Runs alternate; prints medians and the added seconds.
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.fixtures.gpgkeys import make_key, stop_agent  # noqa: E402
from tests.fixtures.rpms import make_many_rpms, make_rpm  # noqa: E402
from xcpbuild.pipeline.publish import publish, upgrade_check  # noqa: E402

BUDGET_S = 2.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--packages", type=int, default=5)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    real_request = upgrade_check.request
    with tempfile.TemporaryDirectory(prefix="xcpbuild-bench-upgrade-") as scratch:
        tmp = Path(scratch)
        key = make_key(tmp / "key")
        try:
            live = [*make_many_rpms(tmp, "small", args.packages - 2), make_rpm(tmp, "libfoo")]
            live.append(make_rpm(tmp, "app", requires=["libfoo < 9"]))
            timings: dict[str, list[float]] = {"baseline": [], "checked": []}
            for run in range(args.runs):
                for side in ("baseline", "checked") if run % 2 == 0 else ("checked", "baseline"):
                    root = tmp / f"repo-{side}-{run}"
                    publish.publish(live, root, "8.3", "testing", key=key)
                    update = make_rpm(tmp / f"{side}-{run}", "libfoo", version=f"1.{run + 1}")
                    upgrade_check.request = real_request if side == "checked" else _nothing_live  # type: ignore[assignment]
                    started = time.monotonic()
                    publish.publish([update], root, "8.3", "testing", key=key)
                    timings[side].append(time.monotonic() - started)
                    upgrade_check.request = real_request
        finally:
            upgrade_check.request = real_request
            stop_agent(key)
    base, checked = statistics.median(timings["baseline"]), statistics.median(timings["checked"])
    print(f"publish of one update to a {args.packages}-package channel: {base:.2f} s without, {checked:.2f} s with")
    added = checked - base
    print(f"added by the upgrade check: {added:.2f} s = {added / BUDGET_S:.2f}x the {BUDGET_S:g} s budget (<= 1.0)")


def _nothing_live(*args: Any, **kwargs: Any) -> upgrade_check.Request:
    asked = _REAL_REQUEST(*args, **kwargs)
    return dataclasses.replace(asked, dnf=dataclasses.replace(asked.dnf, packages=()))


_REAL_REQUEST = upgrade_check.request


if __name__ == "__main__":
    main()
