"""`xcpbuild shell`: a shell in a package's build environment with its sources and spec staged."""

from __future__ import annotations

import argparse
import sys
import textwrap
from pathlib import Path

from xcpbuild.cli.build import options_from
from xcpbuild.cli.context import Context
from xcpbuild.cli.package_args import add_package_argument, resolve_package
from xcpbuild.pipeline.build import build, shell


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "shell",
        description=textwrap.fill(
            "Start a container of the target's image (uid 1000, network none unless --network), copy the "
            "package's sources to ~/rpmbuild/SOURCES and its spec to ~/rpmbuild/SPECS as a build would, "
            "and open bash there (or run -c COMMAND). The container is removed when the shell ends."
        ),
        epilog=(
            "examples:\n"
            "  xcpbuild shell ~/src/vhd-tool --target xcp-ng-8.2\n"
            "  xcpbuild shell xcp-export-server -c 'rpmbuild -bp SPECS/xcp-export-server.spec'"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_package_argument(parser)
    parser.add_argument("-c", "--command", help="run this shell command instead of an interactive shell")
    parser.add_argument("--network", action="store_true", help="give the container the host's network")
    parser.add_argument("--sources", type=Path, metavar="DIR", help="files git-lfs pointers stand for")
    parser.add_argument("-e", "--env", action="append", default=[], metavar="NAME=VALUE", help="environment")
    parser.add_argument("-v", "--volume", action="append", default=[], dest="mounts", metavar="HOST:CONTAINER")
    parser.add_argument("--keep-container", action="store_true", help="leave the container when the shell ends")
    parser.set_defaults(func=run, stage="rpm")


def run(ctx: Context) -> int:
    args = ctx.args
    settings = ctx.settings
    options = options_from(args)
    package = resolve_package(settings, args)
    with shell.environment(settings, package, options, network=args.network) as box:
        if args.command is not None:
            result = box.exec(["bash", "-c", args.command], workdir=build.TOPDIR, check=False)
            print(result.output)
            return result.exit_code
        print(
            f"xcpbuild: shell in {box.name}; sources in SOURCES/, spec in SPECS/ (exit to remove it)", file=sys.stderr
        )
        return box.attach(["bash", "-l"], workdir=build.TOPDIR)
