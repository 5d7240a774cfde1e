"""What the CLI hands every verb: its parsed arguments and the settings, resolved once.

Verbs never read ``XCPBUILD_*`` variables themselves: the CLI builds one
``Context`` from its flags (``--project``) and the environment, and each verb
takes what it needs from it. Settings are resolved on first use, so verbs that
need no project (``serve``, ``verify``, ``inspect``, ``publish``) work anywhere.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from pathlib import Path

from xcpbuild.config import Settings, load_settings


@dataclass
class Context:
    args: argparse.Namespace
    project: Path | None = None
    _settings: Settings | None = field(default=None, repr=False)

    @property
    def settings(self) -> Settings:
        """The project, cache and work folders (ConfigError when no project is found)."""
        if self._settings is None:
            self._settings = load_settings(project=self.project)
        return self._settings
