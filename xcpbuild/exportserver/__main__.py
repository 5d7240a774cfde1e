"""``python3 -m xcpbuild.exportserver``: run the reference export server on its own.

This is the entry point the standalone package ships; ``xcpbuild serve`` wraps
the same ``add_arguments``/``run``.
"""

import argparse
import os
import signal
import sys
from types import FrameType
from typing import Optional, Sequence

from xcpbuild.errors import ServerError, XcpbuildError
from xcpbuild.exportserver.disk import parse_disk
from xcpbuild.exportserver.server import ExportServer
from xcpbuild.exportserver.transfer import EagainPolicy
from xcpbuild.log import configure

TOKEN_ENV = "XCPBUILD_EXPORT_TOKEN"
DESCRIPTION = (
    "Serve raw disk files as XAPI does: GET /export_raw_vdi?session_id=TOKEN&vdi=NAME&format=raw|vhd"
    "[&base=OTHER] (base=: a delta relative to another served disk, a differencing VHD for format=vhd). "
    "Bulk data goes by zero-copy sendfile, and when a client stops reading the server waits for the "
    "socket to become writable again, for as long as it takes. --eagain-policy legacy-retry brings back "
    "vhd-tool 0.20.0's 2018 failure (20 retries 0.1 s apart, then the export is aborted)."
)
EPILOG = """examples:
  %(prog)s --disk vdi1=/srv/vdi1.raw --token s3cret --port 8080
  %(prog)s --disk a=a.raw --disk b=b.raw --token t --port 0 --eagain-policy legacy-retry
  curl -o vdi1.vhd 'http://127.0.0.1:8080/export_raw_vdi?session_id=s3cret&vdi=vdi1&format=vhd'
  curl -o new.vhd 'http://127.0.0.1:8080/export_raw_vdi?session_id=s3cret&vdi=new&base=old&format=vhd'

Prints `listening on http://HOST:PORT` on stdout once ready (with the real port for --port 0).
SIGTERM or SIGINT stops it; exports in flight are cut short.
"""


def _policy(text: str) -> EagainPolicy:
    try:
        return EagainPolicy.parse(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if value <= 0:
        raise argparse.ArgumentTypeError("must be > 0")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--disk", action="append", required=True, metavar="NAME=PATH", help="a disk to serve as vdi=NAME (repeatable)"
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default: 127.0.0.1)")
    parser.add_argument("--port", type=int, default=0, help="port to bind; 0 picks a free one (default: 0)")
    parser.add_argument(
        "--token",
        default=os.environ.get(TOKEN_ENV),
        help=f"the session_id clients must present (default: ${TOKEN_ENV}, which keeps it out of `ps`)",
    )
    parser.add_argument(
        "--eagain-policy",
        type=_policy,
        default=EagainPolicy(),
        metavar="wait|legacy-retry[:ATTEMPTS:SECONDS]",
        help="what to do when the client's socket is full (default: wait)",
    )
    parser.add_argument(
        "--idle-timeout",
        type=_seconds,
        default=None,
        metavar="SECONDS",
        help="end an export whose client read nothing for this long (default: never)",
    )
    parser.add_argument("--max-connections", type=int, default=256, help="exports at once (default: 256)")


def run(args: argparse.Namespace) -> int:
    """Serve until SIGTERM/SIGINT; ServerError on a bad configuration."""
    if not args.token:
        raise ServerError("no token", hint=f"pass --token TOKEN or set {TOKEN_ENV}")
    server = ExportServer(
        [parse_disk(text) for text in args.disk],
        token=args.token,
        host=args.host,
        port=args.port,
        policy=args.eagain_policy,
        idle_timeout=args.idle_timeout,
        max_connections=args.max_connections,
    )

    def stop(_signum: int, _frame: Optional[FrameType]) -> None:
        server.shutdown()

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        print(f"listening on {server.url}", flush=True)
        server.serve_forever()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python3 -m xcpbuild.exportserver",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_arguments(parser)
    args = parser.parse_args(argv)
    configure()
    try:
        return run(args)
    except XcpbuildError as exc:
        print(f"exportserver: error: {exc.message}", file=sys.stderr)
        if exc.hint:
            print(f"  hint: {exc.hint}", file=sys.stderr)
        return exc.exit_code if isinstance(exc, ServerError) else 1


if __name__ == "__main__":
    sys.exit(main())
