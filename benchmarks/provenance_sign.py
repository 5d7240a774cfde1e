"""Signing provenance per package, against the 0.2 s budget, inside the publish that ships it.

N real RPMs (one rpmbuild run) each get a build folder with a record and a statement, as a build
leaves them; they are published with a throwaway RSA key (dnf check off: it is not what is
measured). The publish stages their provenance with the metadata (``attest.stage``: each
published file's header digest checked, a DSSE envelope signed per package, the index signed).
Prints the seconds per package, its ratio to the budget (target <= 1.0), and the rest of the same
publish as the baseline.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.fixtures.gpgkeys import make_key, stop_agent  # noqa: E402
from tests.fixtures.rpms import make_many_rpms  # noqa: E402
from xcpbuild.pipeline.build import provenance, record  # noqa: E402
from xcpbuild.pipeline.publish import publish  # noqa: E402

BUDGET_S = 0.2


def _as_build(rpm: Path, builds: Path) -> Path:
    """A build folder holding ``rpm`` with its record and statement."""
    folder = builds / rpm.stem
    (folder / "RPMS" / "noarch").mkdir(parents=True)
    placed = folder / "RPMS" / "noarch" / rpm.name
    shutil.copy2(rpm, placed)
    (folder / "build.log").write_text("# build log\n")
    digest = hashlib.sha256(placed.read_bytes()).hexdigest()
    kept = record.BuildRecord(
        package=rpm.name.split("-1.0")[0], version="1.0", release="1", target="local", dist="", stage="rpm",
        key="0" * 64, started=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"), image_tag="xcpbuild-local:x",
        image_id="sha256:" + "0" * 64, source=record.SourceInfo(kind="project"),
        inputs=(record.Input("x.tar.gz", "source", "1" * 64),), spec="Name: x\n", status="ok", seconds=1.0,
        outputs=(record.Artifact(f"RPMS/noarch/{rpm.name}", "rpm", rpm.name.removesuffix(".rpm"), digest),),
    )  # fmt: skip
    record.write(folder, kept)
    (folder / provenance.STATEMENT).write_text(json.dumps(provenance.statement(kept, folder, {})))
    return placed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--packages", type=int, default=20)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="xcpbuild-bench-provenance-") as scratch:
        tmp = Path(scratch)
        key = make_key(tmp / "key")
        try:
            rpms = [_as_build(p, tmp / "builds") for p in make_many_rpms(tmp, "bench", args.packages)]
            report = publish.publish(rpms, tmp / "repo", "8.3", "testing", key=key, dnf_check=False)
        finally:
            stop_agent(key)
    (binary,) = report.repos
    assert len(binary.provenance) == len(rpms), binary
    seconds = binary.provenance_seconds
    published = report.seconds - seconds
    per = seconds / len(rpms)
    print(f"publish of {len(rpms)} packages without it (baseline): {published:.2f} s")
    print(f"provenance for them: {seconds:.2f} s, {per * 1000:.0f} ms each")
    print(
        f"per package: {per / BUDGET_S:.2f}x the {BUDGET_S:g} s budget (<= 1.0); {seconds / published:.2f}x the publish"
    )


if __name__ == "__main__":
    main()
