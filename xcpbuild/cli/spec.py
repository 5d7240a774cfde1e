"""`xcpbuild spec render`: show or write a package's spec as a target would build it."""

from __future__ import annotations

import argparse
import textwrap
from pathlib import Path

from xcpbuild.cli.context import Context
from xcpbuild.cli.output import add_json_flag, emit_json
from xcpbuild.cli.package_args import add_package_argument, resolve_package
from xcpbuild.pipeline.build import image, spec


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "spec",
        description=textwrap.fill(
            "Render specs/PKG.spec.j2 with the package definition (specs/PKG.toml), the target's dist "
            "and the patch series (patches/PKG/series -> Patch1000, Patch1001 ...). The release follows "
            "XCP-ng's rule: a change to upstream release N is N.1, N.2 ..., never N+1. With --check the "
            "result is parsed by rpmspec -P inside the target's image (built if needed). A package "
            "repository's spec (DIR/SPECS/NAME.spec) is shown as it is."
        ),
        epilog=(
            "examples:\n"
            "  xcpbuild spec render vhd-tool --target xcp-ng-7.5\n"
            "  xcpbuild spec render xcp-export-server --target local --check -o /tmp/x.spec\n"
            "  xcpbuild spec render ~/src/vhd-tool --target xcp-ng-8.2 --check --define 'xcp_ng_section extras'"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    actions = parser.add_subparsers(title="actions", metavar="ACTION", required=True)
    render = actions.add_parser("render", help="print (or write) the rendered spec")
    add_package_argument(render)
    render.add_argument("--version", help="render for this upstream version instead of the pinned one")
    render.add_argument("-o", "--output", type=Path, help="write the spec to this file instead of stdout")
    render.add_argument("--check", action="store_true", help="parse it with rpmspec -P in the target's image")
    add_json_flag(render)
    render.set_defaults(func=run_render)


def run_render(ctx: Context) -> int:
    args = ctx.args
    settings = ctx.settings
    package = resolve_package(settings, args)
    rendered = spec.render(settings, package, version=args.version)
    if args.check:
        spec.check(rendered, image.build(settings, args.target).tag, defines=package.defines)
    if args.output is not None:
        args.output.write_text(rendered.text)
    if args.json:
        emit_json({**rendered.__dict__, "checked": bool(args.check), "output": args.output})
    elif args.output is None:
        print(rendered.text, end="")
    else:
        print(f"wrote {args.output} ({rendered.package} {rendered.version}-{rendered.release}, {args.target})")
    return 0
