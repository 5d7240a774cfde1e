"""Entry point: parse arguments, dispatch to a verb, turn errors into exit codes.

``main`` is the only place in xcpbuild that decides what a failure looks like to
the user: one line, the hint, and a traceback only with ``--debug``. Only the
verb that runs is imported (its module and, through it, its pipeline), so
``xcpbuild --help`` starts in a fraction of the time a pipeline import takes.
"""

from __future__ import annotations

import argparse
import importlib
import signal
import sys
from collections.abc import Sequence
from typing import Protocol

from xcpbuild import __version__
from xcpbuild.errors import XcpbuildError

# Verbs in the order --help lists them, with their one-line help. Verb NAME lives
# in ``xcpbuild.cli.NAME``, whose ``register(subparsers)`` adds its parser (setting
# ``func``, which takes the Context).
VERBS: dict[str, str] = {
    "release": "run the whole loop: patch -> build -> verify -> publish -> install (the main job)",
    "doctor": "check the Docker engine, rpm tools, dnf, gpg, qemu-img and free disk",
    "engine": "start a Docker engine on a fresh Debian machine, or show the one in use",
    "source": "fetch a package's upstream at its pinned ref and write the release tarball",
    "patch": "apply a package's patch series exactly, report its health against upstream refs, or refresh it",
    "image": "build a target's build environment image (once; reused while its inputs are unchanged)",
    "spec": "render a package's RPM spec from its jinja2 template for a target",
    "build": "build a package's SRPM (and RPMs) in the target's container; reuse identical builds",
    "shell": "a shell in the target's build environment with the package's sources staged",
    "inspect": "show what an RPM or SRPM holds; --against OLD lists what changed",
    "serve": "serve disks on an XAPI-shaped /export_raw_vdi (raw or VHD) with correct backpressure",
    "verify": "prove exports behave: download like a slow backup remote and check every byte",
    "probe": "build the code a patch changes in a container and make it face a stalled client",
    "publish": "sign RPMs and publish them into a yum repository (checked by dnf, swapped atomically)",
    "promote": "publish the newest build of packages from one channel into another",
    "rollback": "serve a channel's previous metadata generation again",
    "repo": "inspect published repositories (repo diff)",
    "koji": "drive a koji hub: submit and watch builds, import, promote through tags, publish a tag",
}
# Global options that take a value (so the verb is not mistaken for it).
_VALUED_OPTIONS = ("--project",)


class VerbModule(Protocol):
    def register(self, subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None: ...


def build_parser(verbs: Sequence[str] | None = None) -> argparse.ArgumentParser:
    """The parser, with the full parsers of ``verbs`` (default: all) and a listing entry for the others."""
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
    wanted = VERBS.keys() if verbs is None else set(verbs)
    for name, summary in VERBS.items():
        if name in wanted:
            load_verb(name).register(subparsers)
            # The listing's line comes from the table, the one place it is written.
            subparsers._choices_actions.append(subparsers._ChoicesPseudoAction(name, (), summary))
        else:
            subparsers.add_parser(name, help=summary, add_help=False)
    return parser


def load_verb(name: str) -> VerbModule:
    """Import verb ``name``'s module (and so its pipeline): only for the verb that runs, or for a full parser."""
    module: VerbModule = importlib.import_module(f"xcpbuild.cli.{name}")
    return module


def chosen_verb(argv: Sequence[str]) -> str | None:
    """The verb ``argv`` names (the first word that is not a global option or its value)."""
    words = iter(argv)
    for word in words:
        if word in _VALUED_OPTIONS:
            next(words, None)
        elif word == "--":
            return next(words, None)
        elif not word.startswith("-"):
            return word if word in VERBS else None
    return None


def _terminate(signum: int, _frame: object) -> None:
    # Unwind like Ctrl-C so every `with` block runs its clean-up: no orphan
    # container, no half-written repository, no stray lock.
    raise SystemExit(128 + signum)


def main(argv: Sequence[str] | None = None) -> int:
    signal.signal(signal.SIGTERM, _terminate)
    try:
        return _main(sys.argv[1:] if argv is None else list(argv))
    except KeyboardInterrupt:
        # Also while a verb's modules are still being imported: no traceback, the shell's code for Ctrl-C.
        print("xcpbuild: interrupted", file=sys.stderr)
        return 130


def _main(argv: list[str]) -> int:
    verb = chosen_verb(argv)
    try:
        parser = build_parser([verb] if verb else [])
    except XcpbuildError as exc:  # the verb's optional extra is not installed (koji)
        return _failed(exc, debug="--debug" in argv)
    args = parser.parse_args(argv)
    # Imported only now: `xcpbuild --help` has already exited, without paying for them.
    from pathlib import Path

    from xcpbuild.cli.context import Context
    from xcpbuild.log import configure

    configure(verbosity=args.verbose + (1 if args.debug else 0), quiet=args.quiet)
    func = getattr(args, "func", None)
    if func is None:
        parser.print_help()
        return 2
    try:
        result = func(Context(args, project=Path(args.project) if args.project else None))
        return int(result or 0)
    except XcpbuildError as exc:
        return _failed(exc, debug=args.debug)


def _failed(exc: XcpbuildError, *, debug: bool) -> int:
    """What every failure looks like: one line, its hint, the error class's exit code."""
    if debug:
        import traceback

        traceback.print_exc()
    print(f"xcpbuild: error: {exc.message}", file=sys.stderr)
    if exc.hint:
        print(f"  hint: {exc.hint}", file=sys.stderr)
    return exc.exit_code
