"""How far a build goes: the SRPM only (with %prep checked) or the binary RPMs too."""

from __future__ import annotations

from typing import Literal, get_args

Stage = Literal["srpm", "rpm"]
STAGES: tuple[Stage, ...] = get_args(Stage)
