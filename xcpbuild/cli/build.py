"""`xcpbuild build`: SRPM and RPMs of a package for a target, in a container, with a record and a cache."""

from __future__ import annotations

import argparse
import shlex
import textwrap
from pathlib import Path

from xcpbuild.cli.context import Context
from xcpbuild.cli.output import add_json_flag, emit_json, print_table
from xcpbuild.cli.package_args import add_package_argument, resolve_package
from xcpbuild.errors import UsageError
from xcpbuild.model.stage import STAGES, parse_rpmbuild_stage, parse_stage
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
            "  xcpbuild build vhd-tool --target xcp-ng-8.2 --out dist/ --json\n"
            "  xcpbuild build ./mypkg --repo-url file://$PWD/_work/repo/8/8.3/testing/x86_64 --repo-key key.asc"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_package_argument(parser)
    parser.add_argument("--upstream", help="fetch upstream from this URL or path instead of the definition's")
    parser.add_argument("--ref", help="build this upstream ref instead of the target's pinned one")
    parser.add_argument("--stage", choices=STAGES, default="rpm", help="stop after the SRPM (+%%prep) or not")
    parser.add_argument(
        "-o", "--output-dir", "--out", dest="out", type=Path, help="also copy the SRPM and RPMs into this directory"
    )
    parser.add_argument(
        "--sources",
        type=Path,
        metavar="DIR",
        help="files a package repository's git-lfs pointers stand for (each sha256 must be its pointer's oid)",
    )
    parser.add_argument(
        "--rpmbuild-stage",
        metavar="LETTER",
        help="run rpmbuild -rLETTER on the SRPM instead of the binary rebuild (a b p c i l s, as rpmbuild's -b)",
    )
    parser.add_argument(
        "--rpmbuild-opts", default="", metavar="'OPTS'", help="extra rpmbuild options (one shell-quoted string)"
    )
    parser.add_argument(
        "-a",
        "--enablerepo",
        action="append",
        default=[],
        metavar="REPO",
        help="enable this repository for BuildRequires",
    )
    parser.add_argument(
        "--disablerepo", action="append", default=[], metavar="REPO", help="disable this repository for BuildRequires"
    )
    parser.add_argument(
        "--repo-url",
        action="append",
        default=[],
        metavar="URL",
        help="a signed repository for BuildRequires: file:///ROOT/8/8.3/CHANNEL/x86_64 (or http(s) on xcp-ng-* "
        "targets); repeatable",
    )
    parser.add_argument(
        "--local-repo",
        action="append",
        default=[],
        metavar="CHANNEL",
        help="a channel of WORK/repo for the target's release as such a repository; repeatable",
    )
    parser.add_argument(
        "--repo-key",
        type=Path,
        metavar="FILE",
        help="the armored public key --repo-url/--local-repo repositories are signed with (gpgcheck is always on)",
    )
    parser.add_argument(
        "--no-update", action="store_true", help="use the images already built; never build or refresh one"
    )
    parser.add_argument(
        "-e", "--env", action="append", default=[], metavar="NAME=VALUE", help="environment of the rpmbuild steps"
    )
    parser.add_argument(
        "-v",
        "--volume",
        action="append",
        default=[],
        dest="mounts",
        metavar="HOST:CONTAINER",
        help="an extra bind mount (such builds are never reused: a mount is not a hashed input)",
    )
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


def options_from(args: argparse.Namespace) -> build.BuildOptions:
    """The build options of a command line (shared with `xcpbuild shell`)."""
    return build.BuildOptions(
        stage=parse_stage(args.stage),
        upstream=getattr(args, "upstream", None),
        ref=getattr(args, "ref", None),
        out=getattr(args, "out", None),
        keep_container=getattr(args, "keep_container", False),
        timeout=getattr(args, "timeout", build.DEFAULT_TIMEOUT),
        rpmbuild_stage=parse_rpmbuild_stage(args.rpmbuild_stage) if getattr(args, "rpmbuild_stage", None) else None,
        rpmbuild_opts=tuple(shlex.split(getattr(args, "rpmbuild_opts", ""))),
        environment=tuple(parse_env(value) for value in args.env),
        mounts=tuple(parse_mount(value) for value in args.mounts),
        enablerepo=tuple(getattr(args, "enablerepo", ())),
        disablerepo=tuple(getattr(args, "disablerepo", ())),
        no_update=getattr(args, "no_update", False),
        sources_dir=args.sources.resolve() if args.sources else None,
        repo_urls=tuple(getattr(args, "repo_url", ())),
        local_repos=tuple(getattr(args, "local_repo", ())),
        repo_key=args.repo_key.resolve() if getattr(args, "repo_key", None) else None,
    )


def parse_env(value: str) -> tuple[str, str]:
    name, sep, rest = value.partition("=")
    if not sep or not name.replace("_", "a").isalnum():
        raise UsageError(f"-e {value!r} must look like NAME=VALUE", hint="e.g. -e CFLAGS=-O0")
    return name, rest


def parse_mount(value: str) -> tuple[str, str]:
    host, sep, inside = value.partition(":")
    if not sep or not host or not inside.startswith("/"):
        raise UsageError(f"-v {value!r} must look like HOST:/CONTAINER/PATH", hint="e.g. -v ~/ccache:/ccache")
    path = Path(host).expanduser().resolve()
    if not path.exists():
        raise UsageError(f"-v {value!r}: {path} does not exist", hint="create it, or fix the host path")
    return str(path), inside.split(":", 1)[0]


def run(ctx: Context) -> int:
    args = ctx.args
    settings = ctx.settings
    options = options_from(args)  # bad options fail before any package is read
    result = build.build(settings, resolve_package(settings, args), options)
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
