"""`xcpbuild promote`: move the newest build of packages from one channel to the next."""

from __future__ import annotations

import argparse

from xcpbuild.cli.context import Context
from xcpbuild.cli.output import add_json_flag, emit_json
from xcpbuild.cli.publish import add_key_arguments, add_repo_arguments, add_upgrade_from_argument, show
from xcpbuild.model.repo import PROMOTION_ORDER
from xcpbuild.pipeline.publish import publish

EPILOG = f"""\
examples:
  xcpbuild promote --repo /srv/repo --release 8.3 --from testing --to updates vhd-tool --sign-key A1B2C3D4

Usual order: {" -> ".join(PROMOTION_ORDER)}. The packages keep their signatures (verified again
against --sign-key); the target's metadata is rebuilt, signed, checked with dnf and swapped in.
"""


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "promote",
        description="Publish the newest build of each named package from one channel into another.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("names", nargs="+", metavar="NAME", help="package names")
    add_repo_arguments(parser)
    parser.add_argument("--from", dest="from_channel", required=True, metavar="CHANNEL")
    parser.add_argument("--to", dest="to_channel", required=True, metavar="CHANNEL")
    add_key_arguments(parser)
    add_upgrade_from_argument(parser, "the --to channel")
    add_json_flag(parser)
    parser.set_defaults(func=run)


def run(ctx: Context) -> int:
    args = ctx.args
    with publish.signing_key(args.sign_key, args.gnupg_home) as key:
        report = publish.promote(
            args.repo, args.release, args.from_channel, args.to_channel, args.names, key=key,
            upgrade_from=args.upgrade_from,
        )  # fmt: skip
    if args.json:
        emit_json(report)
    else:
        print(f"promoted from {report.source_channel}: {', '.join(report.promoted)}")
        show(report.publish)
    return 0
