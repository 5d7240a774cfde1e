"""Run a probe driver and face it with xcpbuild's backpressure verifier, inside the probe container.

This file is copied into the probe container with a verifier kit: the few
standard-library-only modules of xcpbuild that ``xcpbuild.verifier``
needs (nothing else of xcpbuild is installed there). The container has no
network but loopback, so the driver and the verifier meet on 127.0.0.1 inside
it. It prints one JSON document on stdout; xcpbuild judges it on the host.

    python3 probe_runner.py --kit verifier --ready probe-ready --port 8080 \
        --sha256 HEX --stall 30 --throttle-kib-s 4096 -- ./probe_driver 8080 disk.img 3

Runs, in this order (the driver serves exactly one request per run): ``raw``
(read as fast as possible), ``throttle`` (read at a fixed rate for a few
seconds, then at full speed), ``stall`` (stop reading for --stall seconds once
5 % of the body arrived, then read the rest). The stall comes last because it
is the one that kills a broken driver.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import subprocess
import sys
import threading
import time
from typing import Any

THROTTLE_SECONDS = 4.0
STALL_AT = 0.05  # fraction of the body read before the stall
READY_SECONDS = 30.0
READ_TIMEOUT = 60.0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--kit", required=True, help="directory holding the verifier's xcpbuild modules")
    parser.add_argument("--ready", required=True, help="the line the driver prints once it listens")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--sha256", required=True, help="sha256 of the file the driver serves")
    parser.add_argument("--stall", type=float, required=True)
    parser.add_argument("--throttle-kib-s", type=int, default=4096)
    parser.add_argument("--stderr-file", default="driver.stderr")
    parser.add_argument("--runs", default="raw,throttle,stall", help="which runs, in this order (comma-separated)")
    parser.add_argument("driver", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    sys.path.insert(0, args.kit)
    from xcpbuild import verifier as verify  # importable only once the kit is on the path

    # A driver that sends nothing for READ_TIMEOUT seconds while we read is hung: that run fails.
    plans = (
        ("raw", 0.0, verify.ClientPlan(read_timeout=READ_TIMEOUT)),
        (
            "throttle",
            0.0,
            verify.ClientPlan(rate=args.throttle_kib_s * 1024.0, rate_for=THROTTLE_SECONDS, read_timeout=READ_TIMEOUT),
        ),
        (
            "stall",
            args.stall,
            verify.ClientPlan(stalls=(verify.Stall(at=STALL_AT, seconds=args.stall),), read_timeout=READ_TIMEOUT),
        ),
    )
    wanted = [name for name in args.runs.split(",") if name]
    unknown = set(wanted) - {name for name, _, _ in plans}
    if unknown or not wanted:
        parser.error(f"--runs takes raw, throttle and stall (got {args.runs})")
    plans = tuple(sorted((p for p in plans if p[0] in wanted), key=lambda p: wanted.index(p[0])))
    driver = [a for a in args.driver if a != "--"]
    report: dict[str, Any] = {"ready": False, "runs": [], "driver_exit": None, "driver_stdout": "", "driver_stderr": ""}
    with open(args.stderr_file, "wb") as err:
        proc = subprocess.Popen(driver, stdout=subprocess.PIPE, stderr=err, stdin=subprocess.DEVNULL)
    out_lines: list[str] = []
    ready = threading.Event()

    def pump() -> None:
        assert proc.stdout is not None
        for raw in proc.stdout:
            line = raw.decode(errors="replace").rstrip("\n")
            out_lines.append(line)
            if line.startswith(args.ready):
                ready.set()

    reader = threading.Thread(target=pump, daemon=True)
    reader.start()
    deadline = time.monotonic() + READY_SECONDS
    while not ready.is_set() and proc.poll() is None and time.monotonic() < deadline:
        ready.wait(0.05)
    report["ready"] = ready.is_set()
    if ready.is_set():
        url = f"http://127.0.0.1:{args.port}/probe"
        for name, stall, plan in plans:
            if proc.poll() is not None:
                report["runs"].append({"name": name, "stall": stall, "detail": "not run: the driver had exited"})
                continue
            found = verify.backpressure(url, plan, expect_sha256=args.sha256)
            report["runs"].append({"name": name, "stall": stall, "ok": found.ok, **dataclasses.asdict(found)})
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    reader.join(timeout=5)
    report["driver_exit"] = proc.returncode
    report["driver_stdout"] = "\n".join(out_lines)
    with open(args.stderr_file, "rb") as err_in:
        report["driver_stderr"] = err_in.read().decode(errors="replace")
    json.dump(report, sys.stdout)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
