"""Third-party libraries imported on their first use, not when an adapter is imported.

The Docker SDK (with requests and urllib3) and GitPython take about a second to import
on a loaded machine; a build whose recorded result is reused needs neither. An adapter
names such a library as ``docker = Lazy("docker", "errors", "types")`` at run time (and
imports it normally under ``TYPE_CHECKING``, so the types are the real ones). The first
attribute looked up imports the package and the listed submodules.
"""

from __future__ import annotations

import importlib
import threading
from types import ModuleType
from typing import Any

_lock = threading.Lock()


class Lazy:
    """A stand-in for a module that imports it (and ``submodules``) on the first attribute looked up."""

    def __init__(self, name: str, *submodules: str) -> None:
        self._name = name
        self._submodules = submodules
        self._module: ModuleType | None = None

    def _load(self) -> ModuleType:
        if self._module is None:
            with _lock:
                if self._module is None:
                    module = importlib.import_module(self._name)
                    for sub in self._submodules:
                        importlib.import_module(f"{self._name}.{sub}")
                    self._module = module
        return self._module

    def __getattr__(self, attr: str) -> Any:
        return getattr(self._load(), attr)
