"""Pipeline steps: what xcpbuild does, grouped by domain.

``sources`` -> ``build`` -> ``verify`` | ``publish`` -> ``release`` (and ``doctor`` on its own).
A domain reaches another only through the modules that domain's ``__init__`` lists in
``__all__`` (checked by ``tests/unit/test_quality.py``), and only downwards in that order
(import-linter). Steps use adapters for everything outside the process and never print.
"""
