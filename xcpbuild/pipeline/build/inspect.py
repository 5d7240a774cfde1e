"""What is inside an RPM or SRPM, and what changed between two of them."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from xcpbuild.adapters import rpmheader
from xcpbuild.adapters.rpmheader import RpmHeader

__all__ = ["Changes", "RpmHeader", "compare", "read"]


@dataclass(frozen=True)
class Changes:
    """Differences of NEW against OLD: each list holds what NEW added, dropped or altered."""

    old: str
    new: str
    evr: tuple[str, str] | None
    requires_added: tuple[str, ...]
    requires_removed: tuple[str, ...]
    provides_added: tuple[str, ...]
    provides_removed: tuple[str, ...]
    files_added: tuple[str, ...]
    files_removed: tuple[str, ...]
    files_changed: tuple[str, ...]  # "path: digest" or "path: mode OLD -> NEW"
    patches_added: tuple[str, ...]
    patches_removed: tuple[str, ...]

    @property
    def empty(self) -> bool:
        return not any(
            (
                self.evr,
                self.requires_added,
                self.requires_removed,
                self.provides_added,
                self.provides_removed,
                self.files_added,
                self.files_removed,
                self.files_changed,
                self.patches_added,
                self.patches_removed,
            )
        )


def read(paths: Sequence[Path]) -> list[RpmHeader]:
    return [rpmheader.read(path) for path in paths]


def _delta(old: Sequence[str], new: Sequence[str]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    return tuple(sorted(set(new) - set(old))), tuple(sorted(set(old) - set(new)))


def compare(old: RpmHeader, new: RpmHeader) -> Changes:
    """What changed from ``old`` to ``new`` (dependencies, files, patches, version)."""
    old_files = {f.path: f for f in old.files}
    new_files = {f.path: f for f in new.files}
    changed = []
    for path in sorted(set(old_files) & set(new_files)):
        before, after = old_files[path], new_files[path]
        if before.mode != after.mode:
            changed.append(f"{path}: mode {before.mode} -> {after.mode}")
        if before.digest != after.digest:
            changed.append(f"{path}: content ({before.digest[:12] or '-'} -> {after.digest[:12] or '-'})")
        elif before.link != after.link:
            changed.append(f"{path}: link {before.link} -> {after.link}")
    requires_added, requires_removed = _delta(old.requires, new.requires)
    provides_added, provides_removed = _delta(old.provides, new.provides)
    files_added, files_removed = _delta(list(old_files), list(new_files))
    patches_added, patches_removed = _delta(old.patches, new.patches)
    return Changes(
        old=old.nevra,
        new=new.nevra,
        evr=(old.evr, new.evr) if old.evr != new.evr else None,
        requires_added=requires_added,
        requires_removed=requires_removed,
        provides_added=provides_added,
        provides_removed=provides_removed,
        files_added=files_added,
        files_removed=files_removed,
        files_changed=tuple(changed),
        patches_added=patches_added,
        patches_removed=patches_removed,
    )
