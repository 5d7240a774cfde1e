"""The reproducibility check: build twice in fresh containers at different times and compare.

Both builds get ``SOURCE_DATE_EPOCH`` from the package's newest changelog entry
and rpm's reproducibility macros (build time and file times clamped to it, a
fixed build host), so a package that embeds nothing of its build's moment comes
out byte for byte the same. Each build is a real one: an extra environment
value (``XCPBUILD_REPRODUCIBLE_RUN``) keys them apart, so neither is reused
from the other. What differs is reported per package file: the header fields
that should match, the payload digest, and each file's digest, mode, owner and
time; diffoscope's output (when Debian's package is installed) is kept in the
first build's folder, ``reproducible/``.
"""

from __future__ import annotations

import datetime as dt
import json
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from xcpbuild.adapters import diffoscope, rpmheader
from xcpbuild.config import Settings
from xcpbuild.errors import UsageError
from xcpbuild.log import get_logger, step
from xcpbuild.pipeline.build import build as builds
from xcpbuild.pipeline.sources.package import DefinedPackage, Package

log = get_logger("reproducible")

MACROS = (
    ("use_source_date_epoch_as_buildtime", "1"),
    ("clamp_mtime_to_source_date_epoch", "1"),
    ("_buildhost", "xcpbuild.reproducible"),
)
RUN_VARIABLE = "XCPBUILD_REPRODUCIBLE_RUN"
FOLDER = "reproducible"


def source_date_epoch(package: Package) -> int | None:
    """Midnight UTC of the newest changelog entry (None: the package has no changelog of ours)."""
    if not isinstance(package, DefinedPackage) or not package.definition.changelog:
        return None
    newest = max(entry.date for entry in package.definition.changelog)
    return int(dt.datetime(newest.year, newest.month, newest.day, tzinfo=dt.UTC).timestamp())


def options_for(package: Package, options: builds.BuildOptions) -> builds.BuildOptions:
    """``options`` plus SOURCE_DATE_EPOCH and the macros that make rpm honour it."""
    epoch = source_date_epoch(package)
    if epoch is None:
        raise UsageError(f"{package.name} has no changelog to take SOURCE_DATE_EPOCH from")
    opts = tuple(item for name, value in MACROS for item in ("--define", f"{name} {value}"))
    return replace(
        options,
        environment=(*options.environment, ("SOURCE_DATE_EPOCH", str(epoch))),
        rpmbuild_opts=(*options.rpmbuild_opts, *opts),
    )


@dataclass
class FileResult:
    name: str  # the package file: x-1-1.noarch.rpm
    identical: bool
    differences: list[str] = field(default_factory=list)  # "header buildtime: A -> B", "file /x: digest ..."
    diffoscope: str | None = None  # path of diffoscope's text output


@dataclass
class ReproReport:
    package: str
    source_date_epoch: int
    folders: tuple[str, str]
    files: list[FileResult] = field(default_factory=list)

    @property
    def identical(self) -> bool:
        return bool(self.files) and all(f.identical for f in self.files)


def _differences(first: Path, second: Path) -> list[str]:
    a, b = rpmheader.reproducibility_fields(first), rpmheader.reproducibility_fields(second)
    found = [f"header {key}: {a[key]} -> {b[key]}" for key in sorted(a) if key != "files" and a[key] != b.get(key)]
    files_a, files_b = a["files"], b["files"]
    assert isinstance(files_a, dict) and isinstance(files_b, dict)
    for path in sorted(set(files_a) | set(files_b)):
        old, new = files_a.get(path), files_b.get(path)
        if old is None or new is None:
            found.append(f"file {path}: only in the {'second' if old is None else 'first'} build")
            continue
        found += [f"file {path}: {key} {old[key]} -> {new[key]}" for key in sorted(old) if old[key] != new[key]]
    return found


def check(settings: Settings, package: Package, options: builds.BuildOptions, *, pause: float = 1.5) -> ReproReport:
    """Build ``package`` twice (``pause`` seconds apart, so the clocks differ) and compare what came out."""
    options = options_for(package, options)
    results: list[builds.BuildResult] = []
    for run in ("first", "second"):
        if results:
            time.sleep(pause)
        tagged = replace(options, environment=(*options.environment, (RUN_VARIABLE, run)))
        with step(f"reproducibility: {run} build of {package.name}"):
            results.append(builds.build(settings, package, tagged))
    first, second = results
    report = ReproReport(package.name, source_date_epoch(package) or 0, (str(first.folder), str(second.folder)))
    out = first.folder / FOLDER
    out.mkdir(exist_ok=True)
    theirs = {Path(a.path).name: (second.folder / a.path, a.sha256) for a in second.artifacts}
    for artifact in first.artifacts:
        name = Path(artifact.path).name
        if name not in theirs:
            report.files.append(FileResult(name, False, ["only in the first build"]))
            continue
        other, digest = theirs[name]
        if digest == artifact.sha256:
            report.files.append(FileResult(name, True))
            continue
        result = FileResult(name, False, _differences(first.folder / artifact.path, other))
        text = diffoscope.compare(first.folder / artifact.path, other)
        if text is not None:
            target = out / f"{name}.diffoscope.txt"
            target.write_text(text)
            result.diffoscope = str(target)
        report.files.append(result)
    (out / "report.json").write_text(json.dumps(asdict(report), indent=2) + "\n")
    return report
