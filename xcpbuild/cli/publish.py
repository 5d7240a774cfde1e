"""`xcpbuild publish`: sign RPMs and publish them into an XCP-ng yum repository, safely."""

from __future__ import annotations

import argparse
from pathlib import Path

from xcpbuild.cli.context import Context
from xcpbuild.cli.output import add_json_flag, emit_json, print_table
from xcpbuild.errors import UsageError
from xcpbuild.model.repo import CHANNELS
from xcpbuild.pipeline.publish import publish

EPILOG = """\
examples:
  xcpbuild publish out/*.rpm --repo /srv/repo --release 8.3 --channel testing --sign-key A1B2C3D4
  xcpbuild publish vhd-tool-*.rpm --repo _work/repo --release 8.3 --channel lab   # unsigned, for local tests
  xcpbuild publish out/*.rpm --repo /srv/repo --release 8.3 --channel testing --upgrade-from base --upgrade-from updates

Binary RPMs go to ROOT/<major>/<X.Y>/<channel>/x86_64/Packages, SRPMs to .../Source/SPackages.
Order: sign (a header signature; with --rpmv3, or for packages without a payload digest, a
header+payload one as well) -> verify every signature -> metadata in staging (gz, EL7-readable) -> sign repomd.xml
-> with a key, each build's signed provenance beside repomd.xml
-> check checksums, install the new packages with a real dnf, upgrade the live ones to them
(--upgrade-from: the live packages of the channels hosts run) and repoclosure -> atomic swap. Nothing live
changes unless every step passed. Publishing a NEVRA again is a no-op if the content is the same
and refused if it differs. Publishers on one repo wait for each other (lock in ROOT).
"""


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "publish",
        description="Sign RPMs and publish them into an XCP-ng-layout yum repository, safely.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("rpms", nargs="+", type=Path, metavar="RPM", help="binary RPMs and SRPMs to publish")
    add_repo_arguments(parser)
    parser.add_argument("--channel", required=True, help=f"one of: {', '.join(CHANNELS)}")
    add_key_arguments(parser)
    add_rpmv3_argument(parser)
    parser.add_argument(
        "--unfreeze-base", action="store_true", help="allow publishing to an already published (frozen) base channel"
    )
    parser.add_argument(
        "--sqlite", action="store_true", help="also write yum's sqlite databases (kept on later publishes)"
    )
    parser.add_argument("--no-dnf-check", action="store_true", help="skip the dnf install check (not recommended)")
    add_upgrade_from_argument(parser)
    add_json_flag(parser)
    parser.set_defaults(func=run)


def add_repo_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--repo", required=True, type=Path, metavar="ROOT", help="root of the repository tree")
    parser.add_argument("--release", required=True, metavar="X.Y", help="XCP-ng release, e.g. 8.3")


def add_key_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--sign-key", metavar="KEYID", help="GnuPG key to sign with (without it: unsigned repo)")
    parser.add_argument(
        "--gnupg-home", type=Path, metavar="DIR", help="GnuPG home holding the key (default: GNUPGHOME)"
    )


def add_rpmv3_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--rpmv3",
        action="store_true",
        help="give every package the header+payload signature too, as rpmsign --rpmv3 does, so an EL7 `rpm -K` "
        "also checks the payload (default: only packages without a payload digest, e.g. built by CentOS 7's "
        "rpm, get it; one RSA signature per package less)",
    )


def add_upgrade_from_argument(parser: argparse.ArgumentParser, default: str = "the channel published") -> None:
    parser.add_argument(
        "--upgrade-from",
        action="append",
        choices=CHANNELS,
        metavar="CHANNEL",
        help="the upgrade check installs the live packages of this channel (repeatable: the channels hosts run, "
        f"e.g. base and updates) and upgrades them to the staged ones (default: {default})",
    )


def show(report: publish.PublishReport) -> None:
    rows = []
    for repo in report.repos:
        rows += [(n, "added", repo.path) for n in repo.added]
        rows += [(n, "already published", repo.path) for n in repo.unchanged]
    print_table(("package", "result", "repo"), rows)
    for repo in report.repos:
        if repo.generation is not None:
            print(
                f"{repo.path}: generation {repo.generation} is live (was {repo.previous_generation}); "
                f"metadata {repo.metadata_seconds:.2f}s, {repo.packages_read} read, {repo.packages_reused} reused"
            )
        if repo.provenance:
            print(f"{repo.path}: signed provenance in repodata/: {', '.join(repo.provenance)}")
    if not report.changed:
        print("nothing new: the repository is unchanged")


def run(ctx: Context) -> int:
    args = ctx.args
    if args.rpmv3 and not args.sign_key:
        raise UsageError("--rpmv3 chooses which signatures to write: it needs --sign-key")
    with publish.signing_key(args.sign_key, args.gnupg_home) as key:
        report = publish.publish(
            args.rpms,
            args.repo,
            args.release,
            args.channel,
            key=key,
            unfreeze_base=args.unfreeze_base,
            dnf_check=not args.no_dnf_check,
            sqlite=args.sqlite,
            upgrade_from=args.upgrade_from,
            rpmv3=args.rpmv3,
        )
    if args.json:
        emit_json(report)
    else:
        show(report)
    return 0
