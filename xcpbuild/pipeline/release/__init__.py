"""The main job: a release plan run as sources -> build -> verify -> publish -> install/promote.

Public modules: ``release`` (run a plan, the step outcomes and the summary).
"""

__all__ = ["release"]
