"""The main job: a release plan run as sources -> build -> verify -> publish -> install/promote.

Public modules: ``release`` (run a plan, the step outcomes and the summary), ``report`` (the run's
self-contained ``report.html``), ``charts`` (the trials' charts of bytes over time).
"""

__all__ = ["charts", "release", "report"]
