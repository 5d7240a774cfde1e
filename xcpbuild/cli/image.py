"""`xcpbuild image build|list`: the build environments of the targets."""

from __future__ import annotations

import argparse
import dataclasses
import textwrap

from xcpbuild.cli.context import Context
from xcpbuild.cli.output import add_json_flag, emit_json, print_table
from xcpbuild.pipeline.build import image


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "image",
        description=textwrap.fill(
            "Each target in containers/TARGET/ has a Dockerfile and a target.toml. `image build` builds "
            "its image under a tag that hashes every input (the folder's files, build arguments, the "
            "bootstrapped base's suite, mirror and packages), so a rebuild happens only when one changes. "
            "The `local` target needs no registry: its base is made with mmdebstrap from this machine's "
            "Debian mirror (root, a minute or two, once) and cached."
        ),
        epilog=(
            "examples:\n"
            "  xcpbuild image build local\n"
            "  XCPBUILD_XCPNG_MIRROR=URL XCPBUILD_CENTOS_VAULT=URL XCPBUILD_EPEL_MIRROR=URL \\\n"
            "    XCPBUILD_XCPNG_KEY=FILE xcpbuild image build xcp-ng-8.3\n"
            "  xcpbuild image list --json"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    actions = parser.add_subparsers(title="actions", metavar="ACTION", required=True)
    build = actions.add_parser("build", help="build (or reuse) the image of TARGET")
    build.add_argument("target", metavar="TARGET", help="a folder of containers/ (local, xcp-ng-8.3, ...)")
    build.add_argument("--force", action="store_true", help="build again even if an image with these inputs exists")
    add_json_flag(build)
    build.set_defaults(func=run_build)
    listing = actions.add_parser("list", help="list xcpbuild's images; `current` marks those matching the inputs")
    add_json_flag(listing)
    listing.set_defaults(func=run_list)


def run_build(ctx: Context) -> int:
    args = ctx.args
    result = image.build(ctx.settings, args.target, force=args.force)
    if args.json:
        emit_json(dataclasses.asdict(result))
    else:
        how = "reused" if result.reused else f"built in {result.seconds:.1f}s"
        print(f"{result.tag}  {result.image_id[:19]}  ({how})")
    return 0


def run_list(ctx: Context) -> int:
    args = ctx.args
    rows = image.list_images(ctx.settings)
    if args.json:
        emit_json([dataclasses.asdict(r) for r in rows])
    else:
        print_table(
            ("target", "tag", "id", "current", "MB", "created"),
            [(r.target, r.tag, r.image_id[7:19], "yes" if r.current else "", r.size_mb, r.created) for r in rows],
        )
    return 0
