"""The backpressure verifier: download an export like a slow backup remote and check every byte.

A standalone library, like the export server: it depends only on ``errors``,
``log`` and ``vhd`` (an import contract keeps it so), because the probe copies
it into containers where nothing else of xcpbuild is installed.

Modules: ``client`` (the download and its report), ``schedule`` (stalls,
throttling, the disconnect and the deadline), ``response`` (strict parsing of
the response head, chunked bodies), ``checker`` (VHD decoding, hashing, the
comparison with a disk, size limits).
"""

from xcpbuild.verifier.client import OUTCOMES, ClientPlan, Outcome, Report, backpressure
from xcpbuild.verifier.schedule import Stall

__all__ = ["OUTCOMES", "ClientPlan", "Outcome", "Report", "Stall", "backpressure"]
