"""`xcpbuild engine up|status`: get a Docker engine on a fresh machine."""

from __future__ import annotations

import argparse
import dataclasses

from xcpbuild.adapters import engine
from xcpbuild.cli.context import Context
from xcpbuild.cli.output import add_json_flag, emit_json


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "engine",
        description=(
            "`engine up` returns at once when an engine answers (DOCKER_HOST or the default socket). "
            "Otherwise, as root on Debian, it installs docker.io and starts dockerd without a bridge "
            "network (builds run with network none), waiting for its socket."
        ),
    )
    actions = parser.add_subparsers(title="actions", metavar="ACTION", required=True)
    up = actions.add_parser("up", help="make sure an engine answers, starting one if needed")
    up.add_argument("--no-install", action="store_true", help="never apt-get install docker.io")
    up.add_argument(
        "--wait", type=float, default=60.0, metavar="SECONDS", help="how long to wait for the socket (default 60)"
    )
    add_json_flag(up)
    up.set_defaults(func=run_up)
    status = actions.add_parser("status", help="show the engine in use; exit 5 if none answers")
    add_json_flag(status)
    status.set_defaults(func=run_status)


def _show(details: engine.EngineInfo, as_json: bool) -> None:
    if as_json:
        emit_json(dataclasses.asdict(details))
    else:
        print(f"engine {details.version} (API {details.api_version}, {details.os}, {details.storage_driver})")
        print(f"  at {details.url}")


def run_up(ctx: Context) -> int:
    args = ctx.args
    _show(engine.bring_up(install=not args.no_install, wait_seconds=args.wait), args.json)
    return 0


def run_status(ctx: Context) -> int:
    args = ctx.args
    _show(engine.info(engine.client(timeout=10)), args.json)
    return 0
