"""Submit a build to a koji target, watch its task tree, and bring its RPMs and logs home.

A build's source is one of: a SCM URL (``git+URL?#SHA``), a package repository checkout (its
HEAD commit and origin URL, refusing a dirty tree), or an SRPM that xcpbuild built (uploaded to
the hub's work dir first). With ``nowait`` the task id is the result. Otherwise the task tree is
watched (see ``watch``); a success ends with the build's NVR and its RPMs and logs downloaded
into a build folder with a ``build-record.json`` naming the koji task and build ids; a failure
ends with the failing task's log excerpt and a KojiBuildError.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from xcpbuild.adapters import git as gitlib
from xcpbuild.adapters import koji as kojilib
from xcpbuild.adapters.koji import Hub
from xcpbuild.errors import KojiBuildError, KojiError, StepTimeoutError, UsageError
from xcpbuild.log import get_logger
from xcpbuild.pipeline.koji import watch as watchlib
from xcpbuild.pipeline.koji.watch import TaskRow, TaskSource

log = get_logger("koji.submit")

RECORD = "build-record.json"
_SCM = re.compile(r"^git(\+[a-z]+)?://[^\s?#]+\?(#|[^#\s]*#)[0-9a-f]{7,40}$")
# Which of a failed task's files explains the failure, best first.
_LOG_PREFERENCE = ("build.log", "root.log", "mock_output.log", "checkout.log")
EXCERPT_LINES = 25


@dataclass(frozen=True)
class BuildSource:
    """What koji builds: an SCM URL, or an SRPM to upload."""

    scm: str | None = None
    srpm: Path | None = None

    def describe(self) -> str:
        return self.scm if self.scm is not None else str(self.srpm)


def scm_source(url: str) -> BuildSource:
    """A ``git+URL?#SHA`` (or ``git://…?#SHA``) source; UsageError for other shapes."""
    if not _SCM.match(url):
        raise UsageError(
            f"{url!r} is not a koji SCM URL of the form git+https://HOST/REPO?#COMMIT",
            hint="official builds name a full commit: git+https://github.com/xcp-ng-rpms/PKG?#<sha>",
        )
    return BuildSource(scm=url)


def checkout_source(checkout: Path) -> BuildSource:
    """The HEAD commit of a package repository checkout, as koji fetches it (dirty trees refused)."""
    sha, url = gitlib.clean_head(checkout)
    if "://" not in url:
        raise UsageError(
            f"the origin of {checkout} is {url!r}, which a koji builder cannot fetch",
            hint="clone the package repository from its public URL (https://...) and build from that checkout",
        )
    scheme = "git+" if not url.startswith("git://") else ""
    return BuildSource(scm=f"{scheme}{url}?#{sha}")


def srpm_source(path: Path) -> BuildSource:
    if not path.is_file() or not path.name.endswith(".src.rpm"):
        raise UsageError(f"{path} is not an SRPM file", hint="give the .src.rpm that `xcpbuild build` wrote")
    return BuildSource(srpm=path)


@dataclass
class SubmitReport:
    task_id: int
    target: str
    source: str
    scratch: bool
    task_url: str
    state: str = "FREE"
    nvr: str | None = None
    build_id: int | None = None
    folder: Path | None = None
    files: list[str] = field(default_factory=list)
    tasks: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0


def _check_target(hub: Hub, target: str) -> dict[str, Any]:
    info = hub.call("getBuildTarget", target)
    if not info:
        names = sorted(t["name"] for t in hub.call("getBuildTargets"))
        raise KojiError(
            f"koji has no build target {target!r}",
            hint=f"targets on this hub: {', '.join(names[:12]) or 'none'}",
        )
    return dict(info)


def create_task(hub: Hub, source: BuildSource, target: str, *, scratch: bool) -> int:
    """The id of the new ``build`` task (an SRPM is uploaded to the hub's work dir first)."""
    _check_target(hub, target)
    if source.srpm is not None:
        serverdir = kojilib.unique_serverdir("xcpbuild-build")
        hub.upload(source.srpm, serverdir)
        src = f"{serverdir}/{source.srpm.name}"
    else:
        assert source.scm is not None
        src = source.scm
    opts: dict[str, Any] = {"scratch": True} if scratch else {}
    return int(hub.call("build", src, target, opts))


def task_url(hub: Hub, task_id: int) -> str:
    weburl = str(hub.profile.options.get("weburl") or "").rstrip("/")
    return f"{weburl}/taskinfo?taskID={task_id}" if weburl else f"task {task_id}"


def log_excerpt(hub: Hub, task: TaskRow, lines: int = EXCERPT_LINES) -> tuple[str | None, str]:
    """(URL of the log, its last ``lines`` lines) of the failing task; no URL when it has no log."""
    outputs = [str(name) for name in hub.call("listTaskOutput", task.id)]
    ranked = [n for n in _LOG_PREFERENCE if n in outputs] + sorted(n for n in outputs if n.endswith(".log"))
    for name in ranked:
        url = hub.file_url(f"{kojilib.task_path(task.id)}/{name}")
        text = hub.text(url)
        if text is not None:
            return url, "\n".join(text.rstrip("\n").splitlines()[-lines:])
    return None, ""


def _failure_reason(hub: Hub, task: TaskRow) -> str:
    try:
        hub.call("getTaskResult", task.id)
    except KojiError as exc:
        return exc.message.split("the hub said: ", 1)[-1]
    return task.state.lower()


def _download_outputs(hub: Hub, rows: list[TaskRow], folder: Path) -> list[str]:
    """Every RPM and log the tree's tasks wrote, into ``folder`` (logs under logs/<task>/)."""
    got = []
    for row in rows:
        for name in sorted(str(n) for n in hub.call("listTaskOutput", row.id)):
            if name.endswith(".rpm"):
                dest = folder / name
            elif name.endswith(".log"):
                dest = folder / "logs" / f"{row.id}-{row.method}{'-' + row.arch if row.arch else ''}" / name
            else:
                continue
            if not dest.exists():
                hub.download(hub.file_url(f"{kojilib.task_path(row.id)}/{name}"), dest)
            got.append(str(dest.relative_to(folder)))
    return got


def _write_record(folder: Path, hub: Hub, report: SubmitReport) -> None:
    outputs = [
        {"name": rel, "sha256": kojilib.sha256_of(folder / rel), "size": (folder / rel).stat().st_size}
        for rel in report.files
    ]
    record = {
        "status": "ok",
        "nvr": report.nvr,
        "koji": {
            **hub.profile.public(),
            "task_id": report.task_id,
            "build_id": report.build_id,
            "target": report.target,
            "scratch": report.scratch,
            "source": report.source,
        },
        "outputs": outputs,
        "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    partial = folder / f".{RECORD}.partial"
    partial.write_text(json.dumps(record, indent=2) + "\n")
    partial.replace(folder / RECORD)


def _row_dict(row: TaskRow) -> dict[str, Any]:
    return {"id": row.id, "parent": row.parent, "method": row.method, "state": row.state, "host": row.host}


def finish(
    hub: Hub,
    report: SubmitReport,
    result: watchlib.WatchResult,
    out_dir: Path,
    *,
    excerpt: Callable[[str], None],
) -> SubmitReport:
    """Turn a watched tree into the outcome: downloads and a record, a failure, or still queued."""
    report.state = result.root.state
    report.tasks = [_row_dict(r) for r in result.rows]
    report.seconds = result.seconds
    if not result.finished:
        queued = result.root.state == "FREE"
        raise StepTimeoutError(
            f"koji task {report.task_id} is still {watchlib.STATE_WORDS.get(result.root.state, result.root.state)} "
            f"after {result.seconds:.0f} s" + (" (no builder has taken it)" if queued else ""),
            hint=f"it goes on on the hub: `xcpbuild koji watch {report.task_id}` picks it up again",
        )
    if result.root.state != "CLOSED":
        failed = result.failed or result.root
        url, text = log_excerpt(hub, failed)
        if text:
            excerpt(text)
        raise KojiBuildError(
            f"koji task {failed.id} ({failed.method}{' ' + failed.arch if failed.arch else ''}) "
            f"{failed.state.lower()}: {_failure_reason(hub, failed)}",
            hint=f"the whole log: {url}" if url else "`koji taskinfo -v TASK` shows the tree",
        )
    if not report.scratch:
        builds = hub.call("listBuilds", taskID=report.task_id)
        if builds:
            report.nvr, report.build_id = str(builds[0]["nvr"]), int(builds[0]["build_id"])
    name = report.nvr or f"task-{report.task_id}"
    folder = out_dir / name
    folder.mkdir(parents=True, exist_ok=True)
    report.files = _download_outputs(hub, result.rows, folder)
    if report.nvr is None:
        srpms = [f for f in report.files if f.endswith(".src.rpm")]
        report.nvr = srpms[0][: -len(".src.rpm")] if srpms else None
    report.folder = folder
    _write_record(folder, hub, report)
    return report


def submit(
    hub: Hub,
    source: BuildSource,
    target: str,
    *,
    scratch: bool = False,
    nowait: bool = False,
    out_dir: Path,
    show: Callable[[list[TaskRow]], None],
    excerpt: Callable[[str], None],
    interval: float = 5.0,
    timeout: float | None = None,
    tasks: TaskSource | None = None,
) -> SubmitReport:
    task_id = create_task(hub, source, target, scratch=scratch)
    report = SubmitReport(task_id, target, source.describe(), scratch, task_url(hub, task_id))
    log.info("koji: created build task %d on %s", task_id, target)
    if nowait:
        return report
    return watch_task(
        hub, report, out_dir=out_dir, show=show, excerpt=excerpt, interval=interval, timeout=timeout, tasks=tasks
    )


def watch_task(
    hub: Hub,
    report: SubmitReport,
    *,
    out_dir: Path,
    show: Callable[[list[TaskRow]], None],
    excerpt: Callable[[str], None],
    interval: float = 5.0,
    timeout: float | None = None,
    tasks: TaskSource | None = None,
) -> SubmitReport:
    source = tasks if tasks is not None else watchlib.HubTasks(hub)
    result = watchlib.watch(source, report.task_id, show=show, interval=interval, timeout=timeout)
    return finish(hub, report, result, out_dir, excerpt=excerpt)


def report_for_task(hub: Hub, task_id: int) -> SubmitReport:
    """A report for an existing build task (``koji watch``): its target, source and scratch flag."""
    info = hub.call("getTaskInfo", task_id, request=True)
    if not info:
        raise KojiError(f"koji has no task {task_id}", hint="check the task id (`koji list-tasks --mine`)")
    request = list(info.get("request") or [])
    src = str(request[0]) if request else "?"
    target = str(request[1]) if len(request) > 1 else "?"
    opts = request[2] if len(request) > 2 and isinstance(request[2], dict) else {}
    return SubmitReport(task_id, target, src, bool(opts.get("scratch")), task_url(hub, task_id))
