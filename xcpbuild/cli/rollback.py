"""`xcpbuild rollback`: serve a channel's previous generation again."""

from __future__ import annotations

import argparse

from xcpbuild.cli.context import Context
from xcpbuild.cli.output import add_json_flag, emit_json, print_table
from xcpbuild.cli.publish import add_repo_arguments
from xcpbuild.pipeline.publish import history

EPILOG = """\
examples:
  xcpbuild rollback --repo /srv/repo --release 8.3 --channel testing
  xcpbuild rollback --repo /srv/repo --release 8.3 --channel testing --arch Source

The previous generation's metadata (and its signature) is swapped in atomically as a new
generation; packages are never deleted. Rolling back twice goes two publishes back.
"""


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "rollback",
        description="Swap a channel's previous metadata generation back in, atomically.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_repo_arguments(parser)
    parser.add_argument("--channel", required=True)
    parser.add_argument(
        "--arch", default="x86_64", choices=("x86_64", "Source"), help="which repo dir (default x86_64)"
    )
    add_json_flag(parser)
    parser.set_defaults(func=run)


def run(ctx: Context) -> int:
    args = ctx.args
    report = history.rollback(args.repo, args.release, args.channel, args.arch)
    if args.json:
        emit_json(report)
        return 0
    print(
        f"{report.path}: now serving generation {report.to_generation}'s metadata "
        f"(as generation {report.new_generation}; was {report.from_generation})"
    )
    print_table(
        ("change", "package", "arch", "from", "to"),
        [(c.change, c.name, c.arch, c.old or "", c.new or "") for c in report.changes],
    )
    return 0
