"""Specs and builds: spec rendering, build environments (images), rpmbuild in containers, RPM inspection.

Public modules: ``spec`` (render and check), ``image`` (one image per target, keyed by its inputs),
``build`` (plan, reuse or run a container build), ``record`` (build records), ``shell`` (a shell in
the build environment with a package staged), ``inspect`` (what an
RPM holds, or what changed between two), ``provenance`` (the build's in-toto/SLSA statement), ``reproducible``
(build twice, compare).
"""

__all__ = ["build", "image", "inspect", "provenance", "record", "reproducible", "shell", "spec"]
