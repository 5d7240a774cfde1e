"""Named points in a publish where a test may freeze the process to kill it there.

Test-only hook, inert unless ``XCPBUILD_TEST_PAUSE_AT`` is set. Its value is
``NAME`` or ``NAME:N``: the N-th time (default 1st) the publisher reaches the
point NAME it stops itself with SIGSTOP. The crash test then sees the process
stopped, knows exactly which phase it froze in, and SIGKILLs it — a
deterministic version of "pull the plug at this moment".
"""

from __future__ import annotations

import os
import signal
from collections import Counter

ENV = "XCPBUILD_TEST_PAUSE_AT"

# Every point a publish passes, in order (tests sweep over these).
POINTS: tuple[str, ...] = (
    "locked",
    "recovered",
    "staged",
    "signed",
    "verified",
    "placed",
    "metadata",
    "repomd-signed",
    "attested",
    "checked",
    "dnf-checked",
    "generation",
    "swapped",
    "pruned",
)

_seen: Counter[str] = Counter()


def reach(name: str) -> None:
    """Mark that the publisher reached ``name``; freeze here if the test asked for it."""
    spec = os.environ.get(ENV)
    if not spec:
        return
    want, _, nth = spec.partition(":")
    _seen[name] += 1
    if name == want and _seen[name] == int(nth or "1"):
        os.kill(os.getpid(), signal.SIGSTOP)
