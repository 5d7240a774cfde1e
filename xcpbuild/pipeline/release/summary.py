"""A release run's summary, typed: what each step recorded, and the run's outcome.

``summary.json`` in the run folder is ``ReleaseReport.to_json``; ``load`` reads it back
through the ``from_json`` of each class, so the report page (``report``) and anything else
reading a kept run work on these objects, never on the raw dict. A step's ``from_json``
takes what an older or a failed run left (missing keys give the defaults). What the summary
does not carry is not restored: a build's file paths (``BuiltPackage.files``) stay empty.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, Literal, Protocol, TypeVar, get_args

from xcpbuild.model.repo import Channel, check_channel
from xcpbuild.pipeline.release.upstreams import PatchRow
from xcpbuild.pipeline.release.verify_step import Checked

SUMMARY = "summary.json"

StepName = Literal["sources", "build", "verify", "publish", "install"]
STEPS: tuple[StepName, ...] = get_args(StepName)
StepStatus = Literal["ok", "failed", "skipped", "pending"]
STEP_STATUSES: tuple[StepStatus, ...] = get_args(StepStatus)
FAILED_AT: tuple[StepName | Literal["plan"], ...] = (*STEPS, "plan")  # where a run can stop


class StepData(Protocol):
    def to_json(self) -> dict[str, Any]: ...


_Data_co = TypeVar("_Data_co", bound=StepData, covariant=True)


@dataclass
class SourcesData:
    health: list[PatchRow] | None = None  # None: the step failed before it had a table
    left_out: dict[str, str] = field(default_factory=dict)  # package -> why it is not in this run

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {"left_out": self.left_out}
        if self.health is not None:
            data["health"] = [row.to_json() for row in self.health]
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> SourcesData:
        health = data.get("health")
        rows = None if health is None else [PatchRow.from_json(row) for row in health]
        return cls(rows, dict(data.get("left_out") or {}))


@dataclass(frozen=True)
class BuiltPackage:
    """What the release takes from a build (see ``_built``)."""

    folder: Path
    reused: bool
    artifacts: tuple[str, ...]  # NEVRAs
    files: tuple[Path, ...]
    reproducible: dict[str, bool] | None = None  # file -> identical, when the plan required two builds

    def to_json(self) -> dict[str, Any]:
        found: dict[str, Any] = {"folder": str(self.folder), "reused": self.reused, "artifacts": list(self.artifacts)}
        if self.reproducible is not None:
            found["reproducible"] = dict(self.reproducible)
        return found

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> BuiltPackage:
        reproducible = data.get("reproducible")
        return cls(
            folder=Path(data["folder"]),
            reused=bool(data.get("reused")),
            artifacts=tuple(data.get("artifacts") or ()),
            files=(),  # not in the summary
            reproducible=None if reproducible is None else dict(reproducible),
        )


@dataclass
class BuildData:
    packages: dict[str, BuiltPackage] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {name: built.to_json() for name, built in self.packages.items()}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> BuildData:
        return cls({n: BuiltPackage.from_json(b) for n, b in data.items() if isinstance(b, dict) and "folder" in b})


@dataclass
class VerifyData:
    checks: dict[str, Checked] = field(default_factory=dict)

    @property
    def proofs(self) -> dict[str, str]:
        """Per package, one line of what was proven."""
        return {name: checked.proof for name, checked in self.checks.items()}

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {name: {**checked.data, "ok": checked.ok} for name, checked in self.checks.items()}
        data["proofs"] = self.proofs
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> VerifyData:
        proofs = data.get("proofs") or {}
        checks = {}
        for name, recorded in data.items():
            if name == "proofs" or not isinstance(recorded, dict):
                continue
            kept = {key: value for key, value in recorded.items() if key != "ok"}
            problem = str(kept.get("problem") or "")
            proof = str(proofs.get(name, kept.get("proof", "")))
            checks[name] = Checked(name, bool(recorded.get("ok", not problem)), proof, problem, kept)
        return cls(checks)


@dataclass(frozen=True)
class ChannelPublish:
    added: list[str]
    generations: list[int | None]

    def to_json(self) -> dict[str, Any]:
        return {"added": self.added, "generations": self.generations}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ChannelPublish:
        return cls(list(data["added"]), list(data.get("generations") or []))


@dataclass
class PublishData:
    channels: dict[Channel, ChannelPublish] = field(default_factory=dict)
    key: str | None = None  # the signing key's fingerprint, once everything is published

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {channel: published.to_json() for channel, published in self.channels.items()}
        if self.key is not None:
            data["key"] = self.key
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> PublishData:
        channels = {
            check_channel(name): ChannelPublish.from_json(published)
            for name, published in data.items()
            if isinstance(published, dict) and "added" in published
        }
        key = data.get("key")
        return cls(channels, None if key is None else str(key))


@dataclass
class InstallData:
    installed: list[str] | None = None  # None: nothing to install in this plan
    promoted: list[str] | None = None  # None: no promotion planned
    promote_added: list[str] | None = None

    def to_json(self) -> dict[str, Any]:
        data = {"installed": self.installed, "promoted": self.promoted, "promote_added": self.promote_added}
        return {key: value for key, value in data.items() if value is not None}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> InstallData:
        return cls(data.get("installed"), data.get("promoted"), data.get("promote_added"))


@dataclass
class StepOutcome(Generic[_Data_co]):
    """One step of the loop as the summary shows it."""

    name: StepName
    data: _Data_co
    status: StepStatus = "pending"
    seconds: float = 0.0
    detail: str = ""

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "status": self.status,
            "seconds": self.seconds,
            "detail": self.detail,
            "data": self.data.to_json(),
        }


@dataclass
class ReleaseReport:
    plan: str
    target: str
    run_dir: Path
    repo_root: Path
    sources: StepOutcome[SourcesData] = field(default_factory=lambda: StepOutcome("sources", SourcesData()))
    build: StepOutcome[BuildData] = field(default_factory=lambda: StepOutcome("build", BuildData()))
    verify: StepOutcome[VerifyData] = field(default_factory=lambda: StepOutcome("verify", VerifyData()))
    publish: StepOutcome[PublishData] = field(default_factory=lambda: StepOutcome("publish", PublishData()))
    install: StepOutcome[InstallData] = field(default_factory=lambda: StepOutcome("install", InstallData()))
    failed_step: StepName | Literal["plan"] | None = None
    error: str | None = None
    hint: str | None = None
    exit_code: int = 0  # the failing step's error class's, so CI can tell failures apart

    @property
    def ok(self) -> bool:
        return self.failed_step is None

    @property
    def steps(self) -> tuple[StepOutcome[StepData], ...]:
        """In the order they run."""
        return (self.sources, self.build, self.verify, self.publish, self.install)

    def to_json(self) -> dict[str, Any]:
        """The summary as ``summary.json`` and ``--json`` carry it."""
        return {
            "plan": self.plan,
            "target": self.target,
            "run_dir": str(self.run_dir),
            "repo_root": str(self.repo_root),
            "steps": [outcome.to_json() for outcome in self.steps],
            "failed_step": self.failed_step,
            "error": self.error,
            "hint": self.hint,
            "exit_code": self.exit_code,
            "left_out": self.sources.data.left_out,
            "proofs": self.verify.data.proofs,
            "ok": self.ok,
        }

    @property
    def left_out(self) -> dict[str, str]:
        return self.sources.data.left_out

    @property
    def proofs(self) -> dict[str, str]:
        return self.verify.data.proofs

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ReleaseReport:
        """A summary as ``to_json`` wrote it; a step it does not list stays pending."""
        steps = {step["name"]: step for step in data.get("steps") or [] if isinstance(step, dict)}
        failed = data.get("failed_step")
        return cls(
            plan=str(data["plan"]),
            target=str(data["target"]),
            run_dir=Path(data["run_dir"]),
            repo_root=Path(data["repo_root"]),
            sources=_outcome(steps, "sources", SourcesData.from_json),
            build=_outcome(steps, "build", BuildData.from_json),
            verify=_outcome(steps, "verify", VerifyData.from_json),
            publish=_outcome(steps, "publish", PublishData.from_json),
            install=_outcome(steps, "install", InstallData.from_json),
            failed_step=next((name for name in FAILED_AT if name == failed), None),
            error=data.get("error"),
            hint=data.get("hint"),
            exit_code=int(data.get("exit_code") or 0),
        )


_Data = TypeVar("_Data", bound=StepData)


def _outcome(
    steps: dict[str, dict[str, Any]], name: StepName, read: Callable[[dict[str, Any]], _Data]
) -> StepOutcome[_Data]:
    recorded = steps.get(name, {})
    return StepOutcome(
        name,
        read(recorded.get("data") or {}),
        status=next((known for known in STEP_STATUSES if known == recorded.get("status")), "pending"),
        seconds=float(recorded.get("seconds") or 0.0),
        detail=str(recorded.get("detail") or ""),
    )


def load(run_dir: Path) -> ReleaseReport:
    """A kept run's summary (``run_dir/summary.json``) as the typed report."""
    data = json.loads((run_dir / SUMMARY).read_text())
    if not isinstance(data, dict):
        raise ValueError(f"{run_dir / SUMMARY} is not a summary")
    return ReleaseReport.from_json(data)
