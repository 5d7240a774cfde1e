"""Import a local xcpbuild build (SRPM + RPMs + logs) into koji as one build, and tag it.

The files go up with koji's upload into one fresh work dir, then one ``CGImport`` call (koji's
content-generator import, content generator ``xcpbuild``) creates the build with all its RPMs
and logs in a single hub transaction: a failed import leaves no build behind. Importing the
same files again is a no-op (the build is found by NVR and its SRPM's checksum); a build of the
same NVR with other content is refused, as koji never changes a build.
"""

from __future__ import annotations

import json
import platform
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from xcpbuild import __version__
from xcpbuild.adapters import createrepo
from xcpbuild.adapters import koji as kojilib
from xcpbuild.adapters.koji import Hub
from xcpbuild.errors import KojiError, UsageError
from xcpbuild.log import get_logger, step

log = get_logger("koji.import")

CONTENT_GENERATOR = "xcpbuild"
ARCHES = ("x86_64", "noarch", "src")


@dataclass
class ImportReport:
    nvr: str
    build_id: int
    imported: bool  # False: the same build was already in koji
    rpms: list[str] = field(default_factory=list)
    logs: list[str] = field(default_factory=list)
    tagged: str | None = None
    already_tagged: bool = False


@dataclass(frozen=True)
class _Local:
    srpm: Path
    rpms: list[Path]
    logs: list[Path]
    record: dict[str, Any]


def _collect(paths: list[Path]) -> _Local:
    """The SRPM, RPMs and logs of a build folder (or of the files given)."""
    files: list[Path] = []
    record: dict[str, Any] = {}
    for path in paths:
        if path.is_dir():
            files += sorted(p for p in path.rglob("*") if p.is_file())
            if (path / "build-record.json").is_file():
                record = json.loads((path / "build-record.json").read_text())
        elif path.is_file():
            files.append(path)
        else:
            raise UsageError(f"{path} does not exist")
    srpms = [p for p in files if p.name.endswith(".src.rpm")]
    if len(srpms) != 1:
        raise UsageError(
            f"a koji build needs exactly one SRPM; found {len(srpms)} in {', '.join(map(str, paths))}",
            hint="give one build folder (xcpbuild build --stage rpm writes SRPM, RPMs and build.log)",
        )
    rpms = [p for p in files if p.name.endswith(".rpm") and p not in srpms]
    logs = [p for p in files if p.name.endswith(".log")]
    return _Local(srpms[0], rpms, logs, record)


def _output(path: Path, kind: str, arch: str) -> dict[str, Any]:
    return {
        "buildroot_id": 1,
        "filename": path.name,
        "filesize": path.stat().st_size,
        "arch": arch,
        "checksum": kojilib.sha256_of(path),
        "checksum_type": "sha256",
        "type": kind,
    }


def metadata(local: _Local, records: dict[Path, createrepo.PackageRecord]) -> dict[str, Any]:
    """The content-generator metadata (version 0) describing the build and its files."""
    source = records[local.srpm]
    started = float(local.srpm.stat().st_mtime)
    extra: dict[str, Any] = {"xcpbuild": {"version": __version__}}
    for key in ("key", "target", "package"):
        if key in local.record:
            extra["xcpbuild"][key] = local.record[key]
    outputs = [_output(local.srpm, "rpm", "src")]
    outputs += [_output(p, "rpm", records[p].arch) for p in local.rpms]
    outputs += [{**_output(p, "log", "noarch"), "relpath": "", "filename": p.name} for p in local.logs]
    return {
        "metadata_version": 0,
        "build": {
            "name": source.name,
            "version": source.version,
            "release": source.release,
            "epoch": int(source.epoch) if source.epoch not in ("", "0") else None,
            "source": f"xcpbuild:{local.srpm.name}",
            "start_time": started,
            "end_time": max([started, *(p.stat().st_mtime for p in local.rpms)]),
            "extra": extra,
        },
        "buildroots": [
            {
                "id": 1,
                "host": {"os": platform.system(), "arch": platform.machine()},
                "content_generator": {"name": CONTENT_GENERATOR, "version": __version__},
                "container": {"type": "docker", "arch": "x86_64"},
                "tools": [],
                "components": [],
                "extra": {},
            }
        ],
        "output": outputs,
    }


def _check(local: _Local) -> dict[Path, createrepo.PackageRecord]:
    records = {p: createrepo.read_package(p) for p in [local.srpm, *local.rpms]}
    source = records[local.srpm]
    for path, rec in records.items():
        if rec.arch not in ARCHES:
            raise UsageError(f"{path.name} is for arch {rec.arch}; XCP-ng builds are x86_64, noarch and src")
    names = [p.name for p in local.logs]
    if len(set(names)) != len(names):
        raise UsageError("two logs of the build have the same file name", hint="give one build folder")
    if not source.release:
        raise UsageError(f"{local.srpm.name} has no release")
    return records


def _existing(hub: Hub, nvr: str, srpm: Path) -> dict[str, Any] | None:
    """The COMPLETE koji build of this NVR (None if there is none); KojiError if its content differs."""
    build = hub.call("getBuild", nvr)
    if not build or kojilib.BUILD_STATES.get(int(build["state"])) in ("FAILED", "CANCELED", "DELETED"):
        return None
    srpms = [r for r in hub.call("listRPMs", buildID=build["id"]) if r["arch"] == "src"]
    size = srpm.stat().st_size
    if srpms and int(srpms[0]["size"]) == size:
        return dict(build)
    raise KojiError(
        f"koji already has a build {nvr} with other content",
        hint="a koji NVR never changes: bump the release (e.g. 1.0.fixstuff.2) and build again",
    )


def import_build(hub: Hub, paths: list[Path], tag: str | None = None) -> ImportReport:
    local = _collect(paths)
    records = _check(local)
    source = records[local.srpm]
    nvr = f"{source.name}-{source.version}-{source.release}"
    if tag is not None and not hub.call("getTag", tag):
        raise KojiError(f"koji has no tag {tag!r}", hint="`koji list-tags` shows the tags")
    existing = _existing(hub, nvr, local.srpm)
    if existing is not None:
        report = ImportReport(nvr, int(existing["id"]), False)
    else:
        meta = metadata(local, records)
        serverdir = kojilib.unique_serverdir("xcpbuild-import")
        files = [local.srpm, *local.rpms, *local.logs]
        with step(f"upload {len(files)} file(s) of {nvr} to koji"):
            for path in files:
                hub.upload(path, serverdir)
        with step(f"import {nvr} into koji"):
            try:
                build = hub.call("CGImport", meta, serverdir)
            except KojiError as exc:
                if "content_generator" in exc.message or "content generator" in exc.message:
                    raise KojiError(
                        exc.message,
                        hint=f"a koji admin grants the import once: koji grant-cg-access USER {CONTENT_GENERATOR} "
                        "--new",
                    ) from exc
                raise
        report = ImportReport(nvr, int(build["id"]), True)
    report.rpms = sorted(p.name for p in [local.srpm, *local.rpms])
    report.logs = sorted(p.name for p in local.logs)
    if tag is not None:
        report.tagged = tag
        report.already_tagged = tag_bypass(hub, tag, nvr)
    log.info("koji: %s is build %d%s", nvr, report.build_id, f", tagged {tag}" if tag else "")
    return report


def tag_bypass(hub: Hub, tag: str, nvr: str) -> bool:
    """Tag ``nvr`` into ``tag`` at once (no tagBuild task, so no builder needed); True if it already was."""
    if any(t["name"] == tag for t in hub.call("listTags", build=nvr)):
        return True
    name = nvr.rsplit("-", 2)[0]
    if not hub.call("getPackage", name) or not hub.call("listPackages", tagID=tag, pkgID=name, inherited=True):
        raise KojiError(
            f"package {name} is not on the package list of {tag}",
            hint=f"a koji admin adds it: koji add-pkg {tag} {name} --owner USER",
        )
    hub.call("tagBuildBypass", tag, nvr)
    return False
