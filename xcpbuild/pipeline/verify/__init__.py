"""Verification steps that run built software: the installed export server under stalls, and the probe.

Public modules: ``exportserver_check`` (install the export-server RPM in a clean container and
stall-test it with the verifier), ``probe`` (compile the upstream code a patch changes and face it
with a stalled client), ``probe_image`` (the probe's build environment), ``probe_check`` (the probe
twice, without and with the series: the unpatched code must fail with the bug's own error, the
patched code must survive). The verifier itself is the standalone library ``xcpbuild.verifier``.
"""

__all__ = ["exportserver_check", "probe", "probe_check", "probe_image"]
