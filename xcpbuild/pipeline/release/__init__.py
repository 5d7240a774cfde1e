"""The main job: a release plan run as sources -> build -> verify -> publish -> install/promote.

Public modules: ``release`` (run a plan, the step outcomes and the summary), ``upstreams`` (the
sources step: upstream per package, left out when unreachable, patch health), ``verify_step`` (every
package's check at once, each with one line of proof).
"""

__all__ = ["release", "upstreams", "verify_step"]
