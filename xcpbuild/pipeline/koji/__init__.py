"""Koji: XCP-ng's build farm driven through its hub (the koji client library, in adapters.koji).

Owns what xcpbuild does with a koji hub: submitting builds and watching their task trees
(``submit``, ``watch``), importing local xcpbuild builds as koji builds (``importer``), moving
builds through the tag pipeline one step at a time (``tags``), and publishing a channel from
a tag through the publish domain's atomic, signed, dnf-checked publish (``channel``).
"""

__all__ = ["channel", "importer", "submit", "tags", "watch"]
