"""Sources and patches: upstream mirrors and pinned tarballs, patch series applied exactly, patch health.

Public modules: ``source`` (mirrors, tarballs, sha256 pins), ``patch`` (apply, check, refresh),
``hunks`` (classifying how far a patch is from applying), ``project`` (tarballs of this project's
own files for packages built from the checkout).
"""

__all__ = ["hunks", "patch", "project", "source"]
