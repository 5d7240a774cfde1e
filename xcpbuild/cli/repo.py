"""`xcpbuild repo diff`: what a publish added, removed or upgraded."""

from __future__ import annotations

import argparse
from pathlib import Path

from xcpbuild.cli.context import Context
from xcpbuild.cli.output import add_json_flag, emit_json, print_table
from xcpbuild.cli.publish import add_repo_arguments
from xcpbuild.pipeline.publish import history

EPILOG = """\
examples:
  xcpbuild repo diff --repo /srv/repo --release 8.3 --channel testing            # the last publish
  xcpbuild repo diff --repo /srv/repo --release 8.3 --channel testing --from 3 --to 5
  xcpbuild repo diff --repo /srv/repo --release 8.3 --channel testing --koji-tag v8.3-testing --profile xcpng

With --koji-tag: what publishing the tag's latest builds would change in the live channel
(x86_64 and Source together); `removed` is what is live but not in the tag (a publish keeps it).
"""


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "repo",
        description="Inspect published repositories.",
    )
    verbs = parser.add_subparsers(title="repo verbs", metavar="VERB")
    diff = verbs.add_parser(
        "diff",
        help="list what a publish added, removed or upgraded",
        description="Compare two metadata generations of a channel (default: the live one and the one before).",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_repo_arguments(diff)
    diff.add_argument("--channel", required=True)
    diff.add_argument("--arch", default="x86_64", choices=("x86_64", "Source"), help="which repo dir (default x86_64)")
    diff.add_argument("--from", dest="old", type=int, metavar="GEN", help="older generation (default: parent of --to)")
    diff.add_argument("--to", dest="new", type=int, metavar="GEN", help="newer generation (default: the live one)")
    diff.add_argument("--koji-tag", metavar="TAG", help="compare the live channel with this koji tag instead")
    diff.add_argument("--profile", default="koji", help="koji profile for --koji-tag (default: koji)")
    diff.add_argument("--koji-config", type=Path, metavar="FILE", help="read koji profiles from this file only")
    add_json_flag(diff)
    diff.set_defaults(func=run_diff)


def run_diff(ctx: Context) -> int:
    args = ctx.args
    if args.koji_tag:
        return _run_tag_diff(ctx)
    report = history.diff(args.repo, args.release, args.channel, args.arch, old=args.old, new=args.new)
    if args.json:
        emit_json(report)
        return 0
    print(f"{report.path}: generation {report.old_generation} -> {report.new_generation}")
    rows = [(c.change, c.name, c.arch, c.old or "", c.new or "") for c in report.changes]
    print_table(("change", "package", "arch", "from", "to"), rows)
    return 0


def _run_tag_diff(ctx: Context) -> int:
    args = ctx.args
    from xcpbuild.cli.koji import session  # only this option needs a koji session
    from xcpbuild.pipeline.koji import channel

    with session(args) as hub:
        report = channel.diff_tag(hub, args.koji_tag, args.repo, args.release, args.channel)
    if args.json:
        emit_json(report)
        return 0
    print(f"live {args.channel} -> koji tag {report.tag}")
    rows = [(c.change, c.name, c.arch, c.old or "", c.new or "") for c in report.changes]
    print_table(("change", "package", "arch", "live", "tag"), rows)
    return 0
