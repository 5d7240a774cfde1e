"""The package argument every package verb shares: a name in specs/ or a package repository directory."""

from __future__ import annotations

import argparse

from xcpbuild.config import Settings
from xcpbuild.pipeline.sources.package import Package, parse_define, resolve

PACKAGE_HELP = (
    "a package of specs/ (specs/PKG.toml), or a package repository directory in the xcp-ng-rpms layout "
    "(SPECS/NAME.spec + SOURCES/)"
)


def add_package_argument(parser: argparse.ArgumentParser, *, target_help: str = "(default: local)") -> None:
    parser.add_argument("package", metavar="PKG|DIR", help=PACKAGE_HELP)
    parser.add_argument("--target", default="local", help=f"a target of containers/ {target_help}")
    parser.add_argument(
        "--define",
        action="append",
        default=[],
        metavar="'NAME VALUE'",
        help="an rpm macro for the spec and rpmbuild, as rpmbuild --define (repeatable)",
    )


def resolve_package(settings: Settings, args: argparse.Namespace) -> Package:
    """Resolve the package argument once; every later step gets this object."""
    defines = [parse_define(value) for value in args.define]
    return resolve(settings, args.package, args.target, defines=defines)
