"""`xcpbuild patch apply|check|refresh`: a package's patch series against upstream."""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

from xcpbuild.cli.context import Context
from xcpbuild.cli.output import add_json_flag, emit_json, print_table
from xcpbuild.cli.package_args import add_package_argument, resolve_package
from xcpbuild.errors import PatchError, UsageError
from xcpbuild.pipeline.sources import patch
from xcpbuild.pipeline.sources.hunks import is_healthy
from xcpbuild.pipeline.sources.package import DefinedPackage


def _common(parser: argparse.ArgumentParser) -> None:
    add_package_argument(parser, target_help="whose series (or %%dist) to use (default: local)")


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "patch",
        description=(
            "Work with the series in patches/PKG/series (one patch file name a line, in order), or with a "
            "package repository's own PatchNNNN lines (spec order, %if blocks resolved by --define)."
        ),
    )
    actions = parser.add_subparsers(title="actions", metavar="ACTION", required=True)

    apply = actions.add_parser(
        "apply",
        help="apply the series in order, exactly (no fuzz); all or nothing",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description=(
            "Apply every patch of the series with `git apply` (hunks may move, context must\n"
            "match: no fuzz). The patches go onto a copy of DIR that replaces it only when all\n"
            "applied; on failure the message names the patch, file and hunk, and DIR is unchanged."
        ),
        epilog="example:\n  tar xzf vhd-tool-0.20.0.tar.gz && xcpbuild patch apply vhd-tool --source vhd-tool-0.20.0",
    )
    _common(apply)
    apply.add_argument("--source", type=Path, required=True, metavar="DIR", help="the unpacked upstream tree")
    add_json_flag(apply)
    apply.set_defaults(func=run_apply)

    check = actions.add_parser(
        "check",
        help="for each ref and patch: applies / applies with offset / needs fuzz / conflicts / already upstream",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description=(
            "Check every patch of the series against upstream refs (patches on top of the ones\n"
            "before them, as a build applies them). Exit status 0 when every patch applies\n"
            "(with or without offset) on every ref; 9 otherwise, since a build would stop there:\n"
            "`needs fuzz` and `conflicts` ask for a refresh, `already upstream` for dropping it."
        ),
        epilog=(
            "examples:\n"
            "  xcpbuild patch check vhd-tool --ref v0.20.0\n"
            "  xcpbuild patch check vhd-tool --ref v0.20.0 --ref v0.27.0 --ref v0.43.0 --json\n"
            "  xcpbuild patch check vhd-tool --upstream ~/src/vhd-tool --ref v0.21.0"
        ),
    )
    _common(check)
    check.add_argument(
        "--ref",
        action="append",
        dest="refs",
        metavar="REF",
        help="upstream tag, branch or commit (repeatable; default: the target's pinned ref)",
    )
    check.add_argument("--upstream", metavar="URL_OR_PATH", help="use this git URL or local clone instead")
    add_json_flag(check)
    check.set_defaults(func=run_check)

    refresh = actions.add_parser(
        "refresh",
        help="regenerate the series from the commits of a branch (git format-patch form, stable names)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description=(
            "Edit patches as commits: check out the pinned ref in a clone of upstream, make a\n"
            "branch, `patch apply` or cherry-pick the series, edit and commit, then refresh. Every\n"
            "commit of BASE..BRANCH becomes one patch; a commit whose subject matches an existing\n"
            "patch keeps its file name, new ones are named NAME-VERSION-<subject>.XCP-ng.patch.\n"
            "The checkout must have no uncommitted changes."
        ),
        epilog=(
            "example:\n"
            "  git -C ~/src/vhd-tool checkout -b xcpng v0.20.0   # commit changes there\n"
            "  xcpbuild patch refresh vhd-tool --from-branch xcpng --source ~/src/vhd-tool --context 1"
        ),
    )
    _common(refresh)
    refresh.add_argument("--from-branch", required=True, metavar="BRANCH", help="branch holding the patches as commits")
    refresh.add_argument("--source", type=Path, required=True, metavar="DIR", help="the git checkout holding BRANCH")
    refresh.add_argument("--base", metavar="REF", help="where the branch starts (default: the target's pinned ref)")
    refresh.add_argument("--context", type=int, default=3, metavar="N", help="lines of context per hunk (default 3)")
    add_json_flag(refresh)
    refresh.set_defaults(func=run_refresh)


def run_apply(ctx: Context) -> int:
    args = ctx.args
    settings = ctx.settings
    pkg = resolve_package(settings, args)
    applied = patch.apply_series(settings, pkg, args.source)
    if args.json:
        emit_json({"package": pkg.name, "source": str(args.source.resolve()), "applied": applied})
    else:
        for name in applied:
            print(f"applied {name}")
        print(f"{len(applied)} patch(es) applied to {args.source}")
    return 0


def run_check(ctx: Context) -> int:
    args = ctx.args
    settings = ctx.settings
    pkg = resolve_package(settings, args)
    pinned = pkg.pinned_ref
    if not args.refs and pinned is None:
        raise UsageError(
            f"the spec of {pkg.name} names no upstream commit (no package_srccommit or gitsha)",
            hint="pass the upstream refs to check with --ref REF",
        )
    refs = args.refs or [pinned]
    report = patch.check(settings, pkg, refs, upstream=args.upstream)
    if args.json:
        emit_json([dataclasses.asdict(item) for item in report])
    elif report:
        print_table(("ref", "patch", "status", "detail"), [(h.ref, h.patch, h.status, h.detail) for h in report])
    else:
        print(f"{pkg.name} has no patches for target {args.target}")
    broken = [h for h in report if not is_healthy(h.status)]
    return PatchError.exit_code if broken else 0


def run_refresh(ctx: Context) -> int:
    args = ctx.args
    settings = ctx.settings
    pkg = resolve_package(settings, args)
    if not isinstance(pkg, DefinedPackage):
        raise UsageError(
            "patch refresh rewrites patches/NAME/series of xcpbuild's own definitions",
            hint="in a package repository, regenerate SOURCES/*.patch with git format-patch and edit the spec",
        )
    result = patch.refresh(
        settings,
        pkg.definition,
        args.from_branch,
        args.source,
        base=args.base,
        target=args.target,
        context=args.context,
    )
    if args.json:
        emit_json(dataclasses.asdict(result))
    else:
        for name in result.series:
            print(f"wrote {name}")
        for name in result.removed:
            print(f"removed {name}")
    return 0
