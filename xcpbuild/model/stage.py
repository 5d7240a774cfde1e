"""How far a build goes: the one definition of the build stages and of rpmbuild's ``-b`` letters.

``srpm`` stops after the SRPM and its %prep; ``rpm`` goes on to the binary
packages. ``--rpmbuild-stage`` picks which of rpmbuild's own ``-b`` steps runs
after the SRPM is made (``a`` all, ``b`` binary, ``p`` prep, ``c`` build,
``i`` install, ``l`` file list check, ``s`` source only).
"""

from __future__ import annotations

from typing import Literal, TypeGuard, get_args

from xcpbuild.errors import UsageError

Stage = Literal["srpm", "rpm"]
STAGES: tuple[Stage, ...] = get_args(Stage)
DEFAULT_STAGE: Stage = "rpm"

# rpmbuild -b<letter>: what each letter runs, and whether it makes binary RPMs.
RPMBUILD_LETTERS: dict[str, tuple[str, bool]] = {
    "a": ("all: SRPM and binary RPMs", True),
    "b": ("binary RPMs", True),
    "p": ("%prep only", False),
    "c": ("%prep and %build", False),
    "i": ("%prep, %build and %install", False),
    "l": ("check of %files against the buildroot", False),
    "s": ("the SRPM only", False),
}


def is_stage(value: str) -> TypeGuard[Stage]:
    return value in STAGES


def parse_stage(value: str, where: str = "--stage") -> Stage:
    if not is_stage(value):
        raise UsageError(f"unknown stage `{value}` in {where}", hint=f"choose {' or '.join(STAGES)}")
    return value


def parse_rpmbuild_stage(value: str) -> str:
    """The letter of ``--rpmbuild-stage`` (``b``, ``-bb`` and ``bb`` all mean ``b``)."""
    letter = value.removeprefix("-").removeprefix("b") if len(value) > 1 else value
    if letter not in RPMBUILD_LETTERS:
        known = ", ".join(f"{k} ({v[0]})" for k, v in RPMBUILD_LETTERS.items())
        raise UsageError(f"unknown --rpmbuild-stage `{value}`: rpmbuild has no -b{letter}", hint=f"letters: {known}")
    return letter


def makes_binaries(letter: str) -> bool:
    return RPMBUILD_LETTERS[letter][1]
