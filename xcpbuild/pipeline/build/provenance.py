"""Build provenance: an in-toto Statement with a SLSA v1 provenance predicate, derived from a BuildRecord.

Each build folder gets ``provenance.json``: the subjects are the SRPM and RPMs
with their sha256 and their main header's sha256 (which signing leaves alone,
so the published, signed file can be tied back to this build); the build
definition names the upstream and commit, every staged input's sha256 (tarball,
patches, spec), the rendered spec itself, the target, the image, and the
project files the inputs came from (package definition, spec template,
patches) so a checkout can be compared; the run details give the builder's
version, start and end, and the build log's sha256. ``publish`` signs and
ships it (``pipeline/publish/attest.py``).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from pathlib import Path
from typing import Any

from xcpbuild.adapters import rpmsign
from xcpbuild.config import Settings
from xcpbuild.pipeline.build.record import BuildRecord
from xcpbuild.pipeline.sources.package import DefinedPackage, Package

STATEMENT = "provenance.json"
STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
PREDICATE_TYPE = "https://slsa.dev/provenance/v1"
BUILD_TYPE = "https://xcpbuild.invalid/rpmbuild-in-container/v1"
BUILDER_ID = "https://xcpbuild.invalid/builder"
HEADER_DIGEST = "rpmHeaderSha256"  # a DigestSet key of our own: the RPM's SHA256HEADER


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def builder_version() -> str:
    import importlib.metadata  # here: only a new statement needs it, not a reused build

    try:
        return importlib.metadata.version("xcpbuild")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def project_files(settings: Settings, package: Package) -> dict[str, str]:
    """The checkout's files the build's inputs came from, relative to the project root, with their sha256."""
    if not isinstance(package, DefinedPackage):
        return {}
    root = settings.project_root
    paths = [package.definition.path, settings.specs_dir / package.definition.template, *package.patch_files]
    found = {}
    for path in paths:
        if path.is_file():
            try:
                name = str(path.resolve().relative_to(root.resolve()))
            except ValueError:
                name = str(path)
            found[name] = sha256_file(path)
    return found


def statement(record: BuildRecord, folder: Path, files: dict[str, str]) -> dict[str, Any]:
    """The Statement for a finished build (``record.status == "ok"``) in ``folder``."""
    outputs = [folder / a.path for a in record.outputs]
    headers = rpmsign.header_digest(outputs) if outputs else {}
    subjects = [
        {
            "name": path.name,
            "digest": {"sha256": artifact.sha256, HEADER_DIGEST: headers[path]},
            "nevra": artifact.nevra,
        }
        for artifact, path in zip(record.outputs, outputs, strict=True)
    ]
    dependencies: list[dict[str, Any]] = []
    source = record.source
    if source.upstream and source.commit:
        dependencies.append(
            {"uri": f"git+{source.upstream}", "digest": {"gitCommit": source.commit}, "name": "upstream"}
        )
    dependencies += [
        {"name": i.name, "digest": {"sha256": i.sha256}, "annotations": {"role": i.role}} for i in record.inputs
    ]
    dependencies.append(
        {"uri": f"docker-image:{record.image_tag}", "digest": {"sha256": record.image_id.split(":")[-1]}}
    )
    started = dt.datetime.fromisoformat(record.started)
    finished = started + dt.timedelta(seconds=record.seconds or 0.0)
    log = folder / "build.log"
    return {
        "_type": STATEMENT_TYPE,
        "subject": subjects,
        "predicateType": PREDICATE_TYPE,
        "predicate": {
            "buildDefinition": {
                "buildType": BUILD_TYPE,
                "externalParameters": {
                    "package": record.package,
                    "version": record.version,
                    "release": record.release,
                    "target": record.target,
                    "stage": record.stage,
                    "options": record.options,
                    "source": {"kind": source.kind, "upstream": source.upstream, "ref": source.ref},
                    "projectFiles": files,
                },
                "internalParameters": {
                    "dist": record.dist,
                    "image": {"tag": record.image_tag, "id": record.image_id},
                    "spec": record.spec,
                    "buildKey": record.key,
                },
                "resolvedDependencies": dependencies,
            },
            "runDetails": {
                "builder": {"id": BUILDER_ID, "version": {"xcpbuild": builder_version()}},
                "metadata": {
                    "invocationId": record.key,
                    "startedOn": started.isoformat(),
                    "finishedOn": finished.isoformat(timespec="seconds"),
                },
                "byproducts": [{"name": log.name, "digest": {"sha256": sha256_file(log)}}] if log.is_file() else [],
            },
        },
    }


def ensure(settings: Settings, package: Package, folder: Path, record: BuildRecord) -> Path | None:
    """Write ``folder/provenance.json`` for a good build that has none yet (a reused older build too)."""
    path = folder / STATEMENT
    if record.status != "ok" or not record.outputs:
        return None
    if not path.is_file():
        partial = path.with_suffix(".json.partial")
        partial.write_text(json.dumps(statement(record, folder, project_files(settings, package)), indent=2) + "\n")
        partial.replace(path)
    return path


def load(folder: Path) -> dict[str, Any] | None:
    try:
        data = json.loads((folder / STATEMENT).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and data.get("_type") == STATEMENT_TYPE else None
