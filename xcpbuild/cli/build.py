"""`xcpbuild build`: SRPM and RPMs of a package for a target, in a container, with a record and a cache."""

from __future__ import annotations

import argparse
import textwrap
from pathlib import Path

from xcpbuild.cli.context import Context
from xcpbuild.cli.output import add_json_flag, emit_json, print_table
from xcpbuild.pipeline.build import build


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "build",
        description=textwrap.fill(
            "Fetch and check the sources, stage the patch series, render the spec, then in a container "
            "of the target's image (network none, uid 1000, --timeout for the whole build) run "
            "`rpmbuild -bs` and, with --stage rpm, the binary build from that SRPM. --stage srpm also "
            "runs %prep from the SRPM, so rpmbuild proves the patches apply. Each build leaves "
            "WORK/builds/NAME-VERSION-RELEASE-TARGET-KEY/ with build.log, build-record.json (every "
            "input's sha256, the image, the rendered spec, each output's NEVRA and sha256) and the "
            "artifacts. The same inputs reuse that folder without starting a container."
        ),
        epilog=(
            "examples:\n"
            "  xcpbuild build xcp-export-server --target local\n"
            "  xcpbuild build vhd-tool --target local --stage srpm --upstream /srv/git/vhd-tool\n"
            "  xcpbuild build vhd-tool --target xcp-ng-8.2 --out dist/ --json"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("package", metavar="PKG", help="a package of specs/ (specs/PKG.toml)")
    parser.add_argument("--target", default="local", help="a target of containers/ (default: local)")
    parser.add_argument("--upstream", help="fetch upstream from this URL or path instead of the definition's")
    parser.add_argument("--ref", help="build this upstream ref instead of the target's pinned one")
    parser.add_argument("--stage", choices=build.STAGES, default="rpm", help="stop after the SRPM (+%%prep) or not")
    parser.add_argument("--out", type=Path, help="also copy the SRPM and RPMs into this directory")
    parser.add_argument(
        "--timeout",
        type=float,
        default=build.DEFAULT_TIMEOUT,
        metavar="SECONDS",
        help=f"time limit of the whole container build (default {build.DEFAULT_TIMEOUT:.0f})",
    )
    parser.add_argument("--keep-container", action="store_true", help="leave the container for inspection")
    add_json_flag(parser)
    parser.set_defaults(func=run)


def run(ctx: Context) -> int:
    args = ctx.args
    result = build.build(
        ctx.settings,
        args.package,
        args.target,
        upstream=args.upstream,
        ref=args.ref,
        stage=args.stage,
        out=args.out,
        keep_container=args.keep_container,
        timeout=args.timeout,
    )
    if args.json:
        emit_json(
            {
                "folder": result.folder,
                "key": result.key,
                "reused": result.reused,
                "artifacts": result.artifacts,
                "copied": result.copied,
                "record": result.folder / build.RECORD,
            }
        )
        return 0
    print(("reused " if result.reused else "built ") + str(result.folder))
    print_table(
        ("kind", "NEVRA", "sha256", "file"), [(a.kind, a.nevra, a.sha256[:16], a.path) for a in result.artifacts]
    )
    for path in result.copied:
        print(f"copied {path}")
    return 0
