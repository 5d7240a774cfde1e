"""The backpressure verifier: download an export like a slow backup remote and check every byte.

A standalone library, like the export server: it depends only on ``errors``,
``log`` and ``vhd`` (an import contract keeps it so), because the probe copies
it into containers where nothing else of xcpbuild is installed.
"""

from xcpbuild.verifier.client import OUTCOMES, ClientPlan, Outcome, Report, Stall, backpressure

__all__ = ["OUTCOMES", "ClientPlan", "Outcome", "Report", "Stall", "backpressure"]
