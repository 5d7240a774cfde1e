"""`xcpbuild serve`: run the reference export server (same code as `python3 -m xcpbuild.exportserver`)."""

from __future__ import annotations

import argparse

from xcpbuild.cli.context import Context
from xcpbuild.exportserver import __main__ as standalone


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "serve",
        description=standalone.DESCRIPTION,
        epilog=standalone.EPILOG.replace("%(prog)s", "xcpbuild serve"),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    standalone.add_arguments(parser)
    parser.set_defaults(func=run)


def run(ctx: Context) -> int:
    return standalone.run(ctx.args)
