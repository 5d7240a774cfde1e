"""xcpbuild: upstream sources + patches -> signed XCP-ng RPMs in published yum repositories."""

__version__ = "0.1.0"
