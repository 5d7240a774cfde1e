"""Build records: what went into a build and what came out, as typed data until ``build-record.json``.

``BuildRecord`` is made when a build is planned, filled while it runs, and
written (``to_json``) and read back (``from_json``) only at the edge, the
build folder's ``build-record.json``. Secrets never reach it: upstream URLs
lose their credentials, ``-e`` values are kept only as a digest.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Literal, get_args

from xcpbuild.model.stage import Stage, is_stage

RECORD = "build-record.json"
SCHEME = 1

InputRole = Literal["source", "patch", "spec"]
ArtifactKind = Literal["srpm", "rpm"]
SourceKind = Literal["git", "project", "repository"]
RecordStatus = Literal["running", "ok", "failed"]


@dataclass(frozen=True)
class Input:
    name: str
    role: InputRole
    sha256: str


@dataclass(frozen=True)
class Artifact:
    path: str  # relative to the build folder: SRPMS/x.src.rpm, RPMS/noarch/x.noarch.rpm
    kind: ArtifactKind
    nevra: str
    sha256: str


@dataclass(frozen=True)
class SourceInfo:
    """Where the sources came from: an upstream at a commit, this project's files, or a package repository."""

    kind: SourceKind
    upstream: str | None = None
    ref: str | None = None
    commit: str | None = None
    paths: tuple[str, ...] = ()  # project files
    repository: str | None = None  # a package repository's directory
    dirty: bool | None = None  # its checkout differs from `commit`
    supplied: tuple[str, ...] = ()  # files taken from --sources DIR (git-lfs pointers in the repository)


@dataclass(frozen=True)
class StepRun:
    argv: tuple[str, ...]
    exit_code: int
    seconds: float


@dataclass(frozen=True)
class BuildRecord:
    package: str
    version: str
    release: str
    target: str
    dist: str
    stage: Stage
    key: str
    started: str
    image_tag: str
    image_id: str
    source: SourceInfo
    inputs: tuple[Input, ...]
    spec: str
    options: dict[str, Any] = field(default_factory=dict)  # defines, rpmbuild stage/opts, env names, mounts
    status: RecordStatus = "running"
    outputs: tuple[Artifact, ...] = ()
    steps: tuple[StepRun, ...] = ()
    prep_checked: bool = False
    seconds: float | None = None
    error: str | None = None

    def finished(self, **changes: Any) -> BuildRecord:
        return replace(self, **changes)

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data = {"schema": SCHEME, **data}
        data["image"] = {"tag": data.pop("image_tag"), "id": data.pop("image_id")}
        data["source"] = {k: v for k, v in data["source"].items() if v not in (None, (), [])}
        for item in data["steps"]:
            item["argv"] = list(item["argv"])
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> BuildRecord:
        """The record ``to_json`` wrote (ValueError, KeyError or TypeError for anything else)."""
        if data.get("schema") != SCHEME:
            raise ValueError(f"build record schema {data.get('schema')!r}")
        stage = data["stage"]
        if not is_stage(stage) or data["status"] not in get_args(RecordStatus):
            raise ValueError("unknown stage or status")
        source = dict(data["source"])
        for key in ("paths", "supplied"):
            source[key] = tuple(source.get(key, ()))
        return cls(
            package=data["package"],
            version=data["version"],
            release=data["release"],
            target=data["target"],
            dist=data["dist"],
            stage=stage,
            key=data["key"],
            started=data["started"],
            image_tag=data["image"]["tag"],
            image_id=data["image"]["id"],
            source=SourceInfo(**source),
            inputs=tuple(Input(**i) for i in data["inputs"]),
            spec=data["spec"],
            options=dict(data.get("options", {})),
            status=data["status"],
            outputs=tuple(Artifact(**a) for a in data.get("outputs", [])),
            steps=tuple(StepRun(tuple(s["argv"]), s["exit_code"], s["seconds"]) for s in data.get("steps", [])),
            prep_checked=bool(data.get("prep_checked", False)),
            seconds=data.get("seconds"),
            error=data.get("error"),
        )


def write(folder: Path, record: BuildRecord) -> None:
    partial = folder / (RECORD + ".partial")
    partial.write_text(json.dumps(record.to_json(), indent=2) + "\n")
    partial.replace(folder / RECORD)


def load(folder: Path) -> BuildRecord | None:
    """The record in ``folder``, or None when there is none or it is not one xcpbuild wrote."""
    try:
        data = json.loads((folder / RECORD).read_text())
        return BuildRecord.from_json(data) if isinstance(data, dict) else None
    except (OSError, ValueError, KeyError, TypeError):
        return None
