"""Sources and patches: packages resolved once, upstream mirrors and pinned tarballs, patch series applied
exactly, patch health, package repositories' files.

Public modules: ``package`` (a package resolved once for a target: xcpbuild's own definition or a
package repository), ``source`` (mirrors, tarballs, sha256 pins), ``patch`` (apply, check, refresh),
``hunks`` (classifying how far a patch is from applying), ``project`` (tarballs of this project's
own files for packages built from the checkout), ``repofiles`` (a package repository's SOURCES/
files with git-lfs pointers and ``sources`` checksums checked).
"""

__all__ = ["hunks", "package", "patch", "project", "repofiles", "source"]
