"""The vocabulary of XCP-ng-layout repositories: channels, their promotion order, the ``X.Y`` release form."""

from __future__ import annotations

import re
from typing import Literal, get_args

from xcpbuild.errors import UsageError

Channel = Literal["base", "updates", "testing", "candidates", "ci", "incoming", "lab"]
CHANNELS: tuple[Channel, ...] = get_args(Channel)
# XCP-ng's tag pipeline, oldest first: a build moves one step at a time towards updates.
PROMOTION_ORDER: tuple[Channel, ...] = ("incoming", "ci", "testing", "candidates", "updates")

# ASCII digits only (str.isdigit and \d accept other scripts' digits), no leading zeros, no
# newline: every spelling of a release maps to exactly one tree.
_RELEASE = re.compile(r"(0|[1-9][0-9]{0,3})\.(0|[1-9][0-9]{0,3})", re.ASCII)


def parse_release(release: str) -> str:
    """The release in its one canonical ``X.Y`` spelling; UsageError for anything else."""
    if not _RELEASE.fullmatch(release):
        raise UsageError(
            f"release {release!r} is not of the form X.Y (e.g. 8.3)",
            hint="ASCII digits, no leading zeros, nothing around them",
        )
    return release


def major_of(release: str) -> str:
    """``8`` for ``8.3``; UsageError unless the release looks like X.Y."""
    return parse_release(release).split(".", 1)[0]


def check_channel(channel: str) -> Channel:
    """``channel`` as a :data:`Channel`; UsageError naming the channels otherwise."""
    for known in CHANNELS:
        if channel == known:
            return known
    raise UsageError(f"unknown channel {channel!r}; channels are: {', '.join(CHANNELS)}")
