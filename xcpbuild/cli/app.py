"""Entry point: parse arguments, dispatch to a verb, turn errors into exit codes.

``main`` is the only place in xcpbuild that decides what a failure looks like to
the user: one line, the hint, and a traceback only with ``--debug``.
"""

from __future__ import annotations

import argparse
import importlib
import os
import signal
import sys
import traceback
from collections.abc import Sequence
from typing import Protocol

from xcpbuild import __version__
from xcpbuild.errors import XcpbuildError
from xcpbuild.log import configure

# Verb modules, in the order --help lists them. Each exposes
# ``register(subparsers) -> None``; the parser it adds sets ``func``.
VERB_MODULES: tuple[str, ...] = (
    "xcpbuild.cli.release",
    "xcpbuild.cli.doctor",
    "xcpbuild.cli.engine",
    "xcpbuild.cli.source",
    "xcpbuild.cli.patch",
    "xcpbuild.cli.image",
    "xcpbuild.cli.spec",
    "xcpbuild.cli.build",
    "xcpbuild.cli.shell",
    "xcpbuild.cli.inspect",
    "xcpbuild.cli.serve",
    "xcpbuild.cli.verify",
    "xcpbuild.cli.probe",
    "xcpbuild.cli.publish",
    "xcpbuild.cli.promote",
    "xcpbuild.cli.rollback",
    "xcpbuild.cli.repo",
)


class VerbModule(Protocol):
    def register(self, subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None: ...


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="xcpbuild",
        description=(
            "Turn upstream sources + patches into signed XCP-ng RPMs in published yum "
            "repositories, and prove the patched software behaves."
        ),
        epilog="Run `xcpbuild VERB --help` for a verb's options and examples.",
    )
    parser.add_argument("--version", action="version", version=f"xcpbuild {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks and every command run")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="show debug log lines")
    parser.add_argument("-q", "--quiet", action="store_true", help="only warnings and errors on stderr")
    parser.add_argument(
        "--project",
        metavar="DIR",
        help="the xcpbuild checkout holding specs/, patches/ and containers/ (default: found from the cwd)",
    )
    subparsers = parser.add_subparsers(title="verbs", metavar="VERB")
    for name in VERB_MODULES:
        module: VerbModule = importlib.import_module(name)
        module.register(subparsers)
    return parser


def _terminate(signum: int, _frame: object) -> None:
    # Unwind like Ctrl-C so every `with` block runs its clean-up: no orphan
    # container, no half-written repository, no stray lock.
    raise SystemExit(128 + signum)


def main(argv: Sequence[str] | None = None) -> int:
    signal.signal(signal.SIGTERM, _terminate)
    parser = build_parser()
    args = parser.parse_args(argv)
    configure(verbosity=args.verbose + (1 if args.debug else 0), quiet=args.quiet)
    if args.project:
        # Every verb resolves its settings from the environment; this makes the flag win for all of them.
        os.environ["XCPBUILD_PROJECT"] = args.project
    func = getattr(args, "func", None)
    if func is None:
        parser.print_help()
        return 2
    try:
        result = func(args)
        return int(result or 0)
    except XcpbuildError as exc:
        if args.debug:
            traceback.print_exc()
        print(f"xcpbuild: error: {exc.message}", file=sys.stderr)
        if exc.hint:
            print(f"  hint: {exc.hint}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("xcpbuild: interrupted", file=sys.stderr)
        return 130
