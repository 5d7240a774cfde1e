"""Publishing: XCP-ng-layout yum repositories, signed, swapped in atomically, with history.

Public modules: ``publish`` (publish and promote), ``repo`` (trees, generations, the lock, the
swap), ``history`` (rollback and diff between generations), ``evr`` (version order and package-list
diffs), ``attest`` (signed provenance beside a channel, and its verification),
``crashpoints`` (named points where tests kill a publisher), ``space`` (a full disk
becomes one DiskFullError).
"""

__all__ = ["attest", "crashpoints", "evr", "history", "publish", "repo"]
