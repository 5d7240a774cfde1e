"""Pipeline steps: what xcpbuild does (source, patch, spec, build, publish, verify ...).

Steps use adapters for everything outside the process and never print.
"""
