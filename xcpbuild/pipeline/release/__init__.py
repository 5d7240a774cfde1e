"""The main job: a release plan run as sources -> build -> verify -> publish -> install/promote.

Public modules: ``release`` (run a plan), ``summary`` (the step outcomes and the run's summary,
typed, and read back from ``summary.json``), ``upstreams`` (the
sources step: upstream per package, left out when unreachable, patch health), ``verify_step`` (every
package's check at once, each with one line of proof), ``report`` (the run's self-contained
``report.html``), ``charts`` (the trials' charts of bytes over time).
"""

__all__ = ["charts", "release", "report", "summary", "upstreams", "verify_step"]
