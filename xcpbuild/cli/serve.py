"""`xcpbuild serve`: run the reference export server (same code as `python3 -m xcpbuild.exportserver`)."""

from __future__ import annotations

import argparse

from xcpbuild.exportserver import __main__ as standalone


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "serve",
        help="serve disks on an XAPI-shaped /export_raw_vdi (raw or VHD) with correct backpressure",
        description=standalone.DESCRIPTION,
        epilog=standalone.EPILOG.replace("%(prog)s", "xcpbuild serve"),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    standalone.add_arguments(parser)
    parser.set_defaults(func=standalone.run)
