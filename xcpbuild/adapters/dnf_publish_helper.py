"""Run by the system's Python (the one dnf runs on), never imported by xcpbuild: a publish's two dnf checks.

One process for the upgrade check (``dnf_upgrade_helper.py``) and the install check
(``dnf_check_helper.py``), started when the publish begins, so that starting
Python, importing dnf and rpm and everything that needs only the live
repositories happen while the publisher signs, places and indexes the new
packages. It reads two JSON lines on stdin:

1. at the start: the upgrade check's request without the staged repositories.
   It resolves the live packages and records them in the installroot (a kept
   root and the difference, or a fresh one) straight away;
2. once the staged repository is built and signed: ``{"staged": [...], "check":
   ID, "install": {install check request}}``. It runs the upgrade to the staged
   metadata and repoclosure, then the install check (last: it makes rpm's
   transactions require signatures for the rest of the process).

It prints one JSON answer, ``{"upgrade": ..., "install": ...}``, each as its
own helper answers. Each check keeps its own dnf Base, root and cache, so
neither sees what the other loaded; at end of input before line 2 it just ends.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType


def _sibling(name: str) -> ModuleType:
    """A helper next to this one, by path: this folder also holds xcpbuild's dnf.py, which must not shadow dnf."""
    spec = importlib.util.spec_from_file_location(name, Path(__file__).with_name(f"{name}.py"))
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def main() -> int:
    first = sys.stdin.readline()
    if not first:
        return 0
    upgrade_helper = _sibling("dnf_upgrade_helper")
    check_helper = _sibling("dnf_check_helper")
    request = json.loads(first)
    upgrade = upgrade_helper.Check(request, Path(request["tmp"]))
    upgrade.live()
    second = sys.stdin.readline()
    if not second:
        return 0  # the publish stopped before its staged repository was ready
    staged = json.loads(second)
    answer = {"upgrade": upgrade.staged(staged["staged"], staged["check"])}
    answer["install"] = check_helper.check(staged["install"])
    print(json.dumps(answer))
    return 0


if __name__ == "__main__":
    sys.exit(main())
