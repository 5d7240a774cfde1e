"""RPM version order (rpmvercmp, epoch:version-release) and what changed between package lists.

Pure functions over anything naming a package's name, arch and EVR (the
package records of each generation); used by promote (newest build of a name),
rollback and ``repo diff``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, TypeVar


class Versioned(Protocol):
    """What version order needs of a package (a createrepo PackageRecord has it)."""

    @property
    def name(self) -> str: ...
    @property
    def arch(self) -> str: ...
    @property
    def epoch(self) -> str: ...
    @property
    def version(self) -> str: ...
    @property
    def release(self) -> str: ...


_Pkg = TypeVar("_Pkg", bound=Versioned)


def _segments(value: str) -> list[str]:
    return re.findall(r"~|\^|[0-9]+|[a-zA-Z]+", value)


def rpmvercmp(a: str, b: str) -> int:
    """rpm's version comparison (-1, 0, 1), including ``~`` (sorts before) and ``^``."""
    if a == b:
        return 0
    sa, sb = _segments(a), _segments(b)
    while sa or sb:
        x = sa.pop(0) if sa else None
        y = sb.pop(0) if sb else None
        if x == "~" or y == "~":
            if x != y:
                return -1 if x == "~" else 1
            continue
        if x == "^" or y == "^":
            if x is None:
                return -1
            if y is None:
                return 1
            if x != y:
                return 1 if x == "^" else -1
            continue
        if x is None:
            return -1
        if y is None:
            return 1
        if x.isdigit() != y.isdigit():
            return 1 if x.isdigit() else -1
        if x.isdigit():
            xi, yi = int(x), int(y)
            if xi != yi:
                return 1 if xi > yi else -1
        elif x != y:
            return 1 if x > y else -1
    return 0


def evr_compare(a: Versioned, b: Versioned) -> int:
    for x, y in ((a.epoch, b.epoch), (a.version, b.version), (a.release, b.release)):
        result = rpmvercmp(x or "0", y or "0")
        if result:
            return result
    return 0


def newest(packages: Sequence[_Pkg]) -> dict[tuple[str, str], _Pkg]:
    """The newest EVR of each (name, arch)."""
    best: dict[tuple[str, str], _Pkg] = {}
    for pkg in packages:
        key = (pkg.name, pkg.arch)
        if key not in best or evr_compare(pkg, best[key]) > 0:
            best[key] = pkg
    return best


@dataclass(frozen=True)
class DiffEntry:
    change: str  # added, removed, upgraded, downgraded
    name: str
    arch: str
    old: str | None
    new: str | None


def diff_packages(old: Sequence[Versioned], new: Sequence[Versioned]) -> list[DiffEntry]:
    """What changed between two package lists, by (name, arch): newest EVR of each side."""

    def evr(pkg: Versioned) -> str:
        epoch = pkg.epoch or "0"
        return f"{'' if epoch == '0' else epoch + ':'}{pkg.version}-{pkg.release}"

    before, after = newest(old), newest(new)
    entries: list[DiffEntry] = []
    for key in sorted(set(before) | set(after)):
        a, b = before.get(key), after.get(key)
        if a is None and b is not None:
            entries.append(DiffEntry("added", key[0], key[1], None, evr(b)))
        elif b is None and a is not None:
            entries.append(DiffEntry("removed", key[0], key[1], evr(a), None))
        elif a is not None and b is not None:
            order = evr_compare(b, a)
            if order:
                entries.append(DiffEntry("upgraded" if order > 0 else "downgraded", key[0], key[1], evr(a), evr(b)))
    return entries
