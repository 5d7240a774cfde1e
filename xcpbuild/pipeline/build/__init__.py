"""Specs and builds: spec rendering, build environments (images), rpmbuild in containers, RPM inspection.

Public modules: ``spec`` (render and check), ``image`` (one image per target, keyed by its inputs),
``build`` (stage inputs, key, reuse or run a container build, build records), ``inspect`` (what an
RPM holds, or what changed between two).
"""

__all__ = ["build", "image", "inspect", "spec"]
