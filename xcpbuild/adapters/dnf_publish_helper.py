"""Run by the system's Python (the one dnf runs on), never imported by xcpbuild: a publish's two dnf checks.

One process for the upgrade check (``dnf_upgrade_helper.py``) and the install check
(``dnf_check_helper.py``), started when the publish begins, so that starting
Python, importing dnf and rpm and everything that needs only the live
repositories happen while the publisher signs, places and indexes the new
packages. It reads two JSON lines on stdin:

1. at the start: the upgrade check's request without the staged repositories,
   and the install check's request (``"install"``): both are known before the
   staged repository exists. This process resolves the live packages and records
   them in the installroot (a kept root and the difference, or a fresh one)
   straight away; a child forked after the imports prepares the install check
   (``dnf_check_helper.prepare``: the key trusted ahead);
2. once the staged repository is built and signed: ``{"staged": [...], "check":
   ID}``. A thread of this process reads it as it comes and hands it to the
   child, which runs the install check as soon as it is prepared, while this
   process finishes the live half if it must, then runs the upgrade to the staged
   metadata and repoclosure: the two checks share the imports and run side by side.

It prints one JSON answer, ``{"upgrade": ..., "install": ...}``, each as its
own helper answers. Each check has its own process, dnf Base, root and cache,
so neither sees what the other loaded (nor the install check's requirement of
signatures in rpm's transactions); at end of input before line 2 both just end.
"""

from __future__ import annotations

import gc
import importlib.util
import json
import os
import sys
import threading
import time
import traceback
from pathlib import Path
from types import ModuleType
from typing import Any


def _sibling(name: str) -> ModuleType:
    """A helper next to this one, by path: this folder also holds xcpbuild's dnf.py, which must not shadow dnf."""
    spec = importlib.util.spec_from_file_location(name, Path(__file__).with_name(f"{name}.py"))
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _install_check(
    helpers: tuple[ModuleType, ModuleType], request: dict[str, Any], from_parent: int, answer: int
) -> None:
    """The forked child: prepare, wait for line 2 from the parent, answer the install check (never returns).

    The repositories after the first (the staged one) are live: they get the kept solv files
    the upgrade check saved, as its own live half does.
    """
    upgrade_helper, check_helper = helpers
    try:
        install = request["install"]
        others = [repo_id for repo_id, _ in install["repos"][1:]]
        seed = upgrade_helper.SolvSeed(request.get("cache"), others, Path(install["tmp"]) / "cache")
        prepared = check_helper.prepare(install, seed)
        with os.fdopen(from_parent) as pipe:
            second = pipe.read()
        if second:
            found = check_helper.check(install, prepared)
            with os.fdopen(answer, "w") as out:
                out.write(json.dumps(found))
    except BaseException:
        traceback.print_exc()
        os._exit(1)
    os._exit(0)


def _relay(to_child: int, second: list[str]) -> None:
    """Line 2, as soon as it comes: to the child, and into ``second`` for this process."""
    line = sys.stdin.readline()
    second.append(line)
    try:
        with os.fdopen(to_child, "w") as out:
            out.write(line)
    except BrokenPipeError:
        pass  # the child ended already: it said why on stderr, and its answer is missing


def main() -> int:
    started = time.monotonic()
    first = sys.stdin.readline()
    if not first:
        return 0
    upgrade_helper = _sibling("dnf_upgrade_helper")
    check_helper = _sibling("dnf_check_helper")
    # dnf runs gc.collect() on every sack reset (fill_sack, close): with the imports frozen out of
    # the collector's reach each one scans only what the checks made (10 ms a call otherwise).
    gc.freeze()
    request = json.loads(first)
    check_helper.fix_dbpath(Path(request["tmp"]) / "home")  # for both checks: rpm's shell, run once
    staged_r, staged_w = os.pipe()
    answer_r, answer_w = os.pipe()
    child = os.fork()  # dnf is imported once; the install check waits for the staged repo meanwhile
    if child == 0:
        os.close(staged_w)
        os.close(answer_r)
        _install_check((upgrade_helper, check_helper), request, staged_r, answer_w)
    os.close(staged_r)
    os.close(answer_w)
    second: list[str] = []
    # Neither check waits for the other's first half: the child may be preparing when line 2 comes.
    relay = threading.Thread(target=_relay, args=(staged_w, second), daemon=True)
    relay.start()
    upgrade = upgrade_helper.Check(request, Path(request["tmp"]))
    upgrade.clock = started
    upgrade.lap("imports")
    upgrade.live()
    relay.join()
    upgrade.lap("wait")
    if not second[0]:
        os.waitpid(child, 0)
        return 0  # the publish stopped before its staged repository was ready
    staged = json.loads(second[0])
    answer = {"upgrade": upgrade.staged(staged["staged"], staged["check"])}
    with os.fdopen(answer_r) as pipe:
        installed = pipe.read()
    _, status = os.waitpid(child, 0)
    if not installed or status:
        print("the install check ended without an answer", file=sys.stderr)
        return 1
    answer["install"] = json.loads(installed)
    print(json.dumps(answer))
    sys.stdout.flush()
    # Every base is closed and the child reaped; tearing down the interpreter with dnf, rpm and
    # libsolv loaded is what the publish would wait for next (10 to 60 ms): skip it.
    os._exit(0)


if __name__ == "__main__":
    sys.exit(main())
