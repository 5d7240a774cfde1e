"""Watch a koji task tree until its root task finishes: states, hosts, elapsed times, the failure.

Pure logic over a :class:`TaskSource` (the hub in real use, a fake in unit tests): poll the
tree, hand each changed snapshot to a display callback, stop when the root task is closed,
failed or canceled, or when the time limit runs out (a tree no builder takes stays FREE).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from xcpbuild.adapters import koji as kojilib
from xcpbuild.adapters.koji import Hub
from xcpbuild.errors import KojiError

DONE = ("CLOSED", "FAILED", "CANCELED")
# What a person reads for each koji state.
STATE_WORDS = {
    "FREE": "queued",
    "ASSIGNED": "assigned",
    "OPEN": "running",
    "CLOSED": "done",
    "FAILED": "failed",
    "CANCELED": "canceled",
}


@dataclass(frozen=True)
class TaskRow:
    id: int
    parent: int | None
    method: str
    state: str
    host: str | None
    created: float
    started: float | None = None
    completed: float | None = None
    arch: str = ""

    @property
    def done(self) -> bool:
        return self.state in DONE

    def elapsed(self, now: float) -> float:
        """Seconds running (or, while queued, waiting); fixed once the task is done."""
        start = self.started if self.started is not None else self.created
        end = self.completed if self.completed is not None and self.done else now
        return max(0.0, end - start)


class TaskSource(Protocol):
    def tree(self, root: int) -> list[TaskRow]:
        """The root task first, then its descendants in id order."""
        ...


@dataclass
class WatchResult:
    root: TaskRow
    rows: list[TaskRow]
    finished: bool
    seconds: float

    @property
    def failed(self) -> TaskRow | None:
        return failed_task(self.rows)


def failed_task(rows: list[TaskRow]) -> TaskRow | None:
    """The task whose log explains a failure: the deepest FAILED task (a failed child fails its parents)."""
    failed = [r for r in rows if r.state == "FAILED"]
    parents = {r.parent for r in failed}
    leaves = [r for r in failed if r.id not in parents]
    return min(leaves, key=lambda r: r.id) if leaves else None


def _depth(row: TaskRow, by_id: dict[int, TaskRow]) -> int:
    depth, parent = 0, row.parent
    while parent is not None and parent in by_id and depth < 20:
        depth, parent = depth + 1, by_id[parent].parent
    return depth


def render(rows: list[TaskRow], now: float) -> list[str]:
    """One line per task, children indented under their parent: id, method, state, host, elapsed."""
    by_id = {r.id: r for r in rows}
    lines = []
    for row in rows:
        label = "  " * _depth(row, by_id) + row.method + (f" ({row.arch})" if row.arch else "")
        seconds = int(row.elapsed(now))
        lines.append(
            f"{row.id:>9}  {label:<34} {STATE_WORDS.get(row.state, row.state.lower()):<9} "
            f"{row.host or '-':<20} {seconds // 60:d}:{seconds % 60:02d}"
        )
    return lines


def signature(rows: list[TaskRow]) -> tuple[tuple[int, str, str | None], ...]:
    """What makes a snapshot worth showing again on a non-terminal display (not the clock)."""
    return tuple((r.id, r.state, r.host) for r in rows)


def watch(
    source: TaskSource,
    root: int,
    *,
    show: Callable[[list[TaskRow]], None],
    interval: float = 5.0,
    timeout: float | None = None,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> WatchResult:
    """Poll the tree of ``root`` every ``interval`` s until it is done or ``timeout`` s passed."""
    started = clock()
    while True:
        rows = source.tree(root)
        show(rows)
        head = rows[0]
        elapsed = clock() - started
        if head.done:
            return WatchResult(head, rows, True, elapsed)
        if timeout is not None and elapsed >= timeout:
            return WatchResult(head, rows, False, elapsed)
        sleep(interval if timeout is None else max(0.0, min(interval, timeout - elapsed)))


def _row(info: dict[str, Any], hosts: dict[int, str]) -> TaskRow:
    host_id = info.get("host_id")
    arch = str(info.get("label") or info.get("arch") or "") if info.get("method") == "buildArch" else ""
    return TaskRow(
        id=int(info["id"]),
        parent=info.get("parent"),
        method=str(info["method"]),
        state=kojilib.TASK_STATES.get(int(info["state"]), str(info["state"])),
        host=hosts.get(host_id) if host_id is not None else None,
        created=float(info["create_ts"]),
        started=float(info["start_ts"]) if info.get("start_ts") else None,
        completed=float(info["completion_ts"]) if info.get("completion_ts") else None,
        arch=arch,
    )


class HubTasks:
    """The task tree as the hub reports it (two calls a poll, host names looked up once)."""

    def __init__(self, hub: Hub) -> None:
        self.hub = hub
        self._hosts: dict[int, str] = {}

    def tree(self, root: int) -> list[TaskRow]:
        info, descendants = self.hub.multicall([("getTaskInfo", (root,), {}), ("getTaskDescendents", (root,), {})])
        if info is None:
            raise KojiError(f"koji has no task {root}", hint="check the task id (`koji list-tasks --mine`)")
        children = sorted((c for group in descendants.values() for c in group), key=lambda c: int(c["id"]))
        infos = [info, *children]
        unknown = {i["host_id"] for i in infos if i.get("host_id") is not None} - set(self._hosts)
        for host_id in unknown:
            host = self.hub.call("getHost", host_id)
            self._hosts[host_id] = str(host["name"]) if host else f"host {host_id}"
        return [_row(i, self._hosts) for i in infos]


def wall_clock_now() -> float:
    """The hub's timestamps are wall-clock seconds; elapsed times are measured against this."""
    return time.time()
