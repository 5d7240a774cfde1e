"""`xcpbuild source fetch`: make a package's release tarball from its pinned upstream ref."""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

from xcpbuild.cli.context import Context
from xcpbuild.cli.output import add_json_flag, emit_json, print_table
from xcpbuild.cli.package_args import add_package_argument, resolve_package
from xcpbuild.config import Settings
from xcpbuild.errors import UsageError
from xcpbuild.pipeline.sources import repofiles, source
from xcpbuild.pipeline.sources.package import RepoPackage


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "source",
        description="Work with upstream sources of the packages defined in specs/NAME.toml.",
    )
    actions = parser.add_subparsers(title="actions", metavar="ACTION", required=True)
    fetch = actions.add_parser(
        "fetch",
        help="clone or update the cached mirror, then write NAME-VERSION.tar.gz with git archive",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description=(
            "Clone (or update) a bare mirror of the package's upstream under the cache\n"
            "(XCPBUILD_CACHE/git/), resolve the target's ref and write NAME-VERSION.tar.gz with\n"
            "`git archive` and the NAME-VERSION/ prefix. The same commit always gives the same\n"
            "bytes. When the pinned ref is fetched, a sha256 that differs from the pin stops\n"
            "with both values and writes nothing."
        ),
        epilog=(
            "examples:\n"
            "  xcpbuild source fetch vhd-tool --target xcp-ng-7.5\n"
            "  xcpbuild source fetch vhd-tool --upstream ~/src/vhd-tool --out SOURCES/\n"
            "  xcpbuild source fetch vhd-tool --ref v0.27.0 --json"
        ),
    )
    add_package_argument(fetch, target_help="whose version and ref to use (default: local)")
    fetch.add_argument(
        "--sources",
        type=Path,
        metavar="DIR",
        help="files a package repository's git-lfs pointers stand for (each sha256 must be its pointer's oid)",
    )
    fetch.add_argument(
        "--upstream", metavar="URL_OR_PATH", help="use this git URL or local clone instead of the definition's"
    )
    fetch.add_argument("--ref", help="tag, branch or commit to archive instead of the target's pinned ref")
    fetch.add_argument(
        "--out", type=Path, metavar="DIR", help="where to write the tarball (default: _work/sources/PKG)"
    )
    add_json_flag(fetch)
    fetch.set_defaults(func=run_fetch)


def run_fetch(ctx: Context) -> int:
    args = ctx.args
    settings = ctx.settings
    pkg = resolve_package(settings, args)
    if isinstance(pkg, RepoPackage):
        return _repository_sources(settings, pkg, args)
    fetched = source.fetch(
        settings, pkg.definition, target=args.target, upstream=args.upstream, ref=args.ref, out_dir=args.out
    )
    if args.json:
        emit_json(dataclasses.asdict(fetched))
    else:
        print_table(
            ("package", "version", "ref", "commit", "sha256"),
            [(fetched.package, fetched.version, fetched.ref, fetched.commit[:12], fetched.sha256)],
        )
        print(fetched.tarball)
    return 0


def _repository_sources(settings: Settings, pkg: RepoPackage, args: argparse.Namespace) -> int:
    """A package repository's sources are its SOURCES/ files: checked (LFS, `sources`) and copied out."""
    if args.upstream or args.ref:
        raise UsageError(
            f"{pkg.repo.path.name} is a package repository: its sources are SOURCES/, not an upstream ref",
            hint="drop --upstream/--ref (they are for `xcpbuild patch check`)",
        )
    out = args.out or settings.work_dir / "sources" / pkg.name
    staged = repofiles.stage_files(pkg, out, supplied_dir=args.sources.resolve() if args.sources else None)
    if args.json:
        emit_json([dataclasses.asdict(item) for item in staged])
    else:
        print_table(
            ("file", "role", "sha256", "from"),
            [(f.name, f.role, f.sha256, "--sources" if f.supplied else "SOURCES/") for f in staged],
        )
        print(out)
    return 0
