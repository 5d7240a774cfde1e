"""`xcpbuild verify ACTION`: prove exports behave. `backpressure` downloads like a slow backup remote."""

from __future__ import annotations

import argparse
from pathlib import Path

from xcpbuild import verifier as verify
from xcpbuild.cli.context import Context
from xcpbuild.cli.output import add_json_flag, emit_json, print_table
from xcpbuild.errors import UsageError, VerifyError

BACKPRESSURE_EPILOG = """examples:
  # the 2018 case: pause 10 s at 30%, expect every byte of the disk back
  xcpbuild verify backpressure 'http://127.0.0.1:8080/export_raw_vdi?vdi=vdi1&format=vhd' \\
      --token s3cret --stall 10@0.3 --expect-disk /srv/vdi1.raw
  # a slow remote: 32 KiB/s for 8 s from 20%, then full speed
  xcpbuild verify backpressure URL --token T --rate 32768 --rate-at 0.2 --rate-for 8 --expect-sha256 HEX
  # a delta (Xen Orchestra's delta backup): applied onto the old disk while downloading
  xcpbuild verify backpressure 'http://127.0.0.1:8080/export_raw_vdi?vdi=new&base=old&format=vhd' \\
      --token s3cret --stall 10@0.3 --expect-disk /srv/new.raw --base-disk /srv/old.raw
  # a real XCP-ng host (self-signed certificate)
  xcpbuild verify backpressure 'https://HOST/export_raw_vdi?vdi=UUID&format=raw' --token OpaqueRef:... --insecure

Fractions are of the response's Content-Length; without one (a server that does not
send it), stalls happen at the start and --disconnect-at is ignored. A raw body
without a Content-Length is "unverified" unless something says what it should be
(--expect-size, --expect-disk or --expect-sha256).

Time: --timeout bounds the TCP connect, the TLS handshake and every wait for a byte;
--deadline bounds the whole run (default: an hour, more for a big expected disk,
plus the planned stalls and throttling). Size: an export declaring a disk of another
size than --expect-size/--expect-disk fails at once, as does one larger than
--max-size (default: the expected size, else 64G).

A VHD export is decoded back to raw as it arrives and compared with --expect-disk
byte for byte (or its sha256 with --expect-sha256). A delta (base= in the URL) is
applied onto --base-disk as it arrives; the rebuilt disk is what gets checked.
Exits 0 when the export is complete and equal (or was disconnected on purpose with
--disconnect-at); exits 14 on a truncated body, an HTTP error, a malformed answer, a
passed deadline or a mismatch.
"""


def _fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a fraction") from None
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError("a fraction is within 0..1")
    return value


def _positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if value < 0:
        raise argparse.ArgumentTypeError("must be >= 0")
    return value


_UNITS = {"": 1, "K": 1024, "M": 1024**2, "G": 1024**3, "T": 1024**4}


def _size(text: str) -> int:
    """Bytes, with an optional binary suffix: 4096, 512M, 2T."""
    number, unit = text.strip(), ""
    if number[-1:].upper() in _UNITS:
        number, unit = number[:-1], number[-1].upper()
    if not number.isascii() or not number.isdigit() or int(number) <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a size in bytes (e.g. 4096, 512M, 2T)")
    return int(number) * _UNITS[unit]


def _seconds(text: str) -> float:
    value = _positive(text)
    if value == 0:
        raise argparse.ArgumentTypeError("must be > 0")
    return value


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "verify",
        description="Verification actions. `backpressure` stalls, throttles or disconnects while downloading "
        "an export, then checks it end to end.",
    )
    actions = parser.add_subparsers(title="actions", metavar="ACTION")

    def usage(_ctx: Context) -> int:
        parser.print_help()
        return 2

    parser.set_defaults(func=usage)
    bp = actions.add_parser(
        "backpressure",
        help="download an export while stalling/throttling/disconnecting, then check it",
        description="Download URL (a /export_raw_vdi of `xcpbuild serve` or of a real XCP-ng host) while "
        "misbehaving like a slow backup remote, then check what arrived.",
        epilog=BACKPRESSURE_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    bp.add_argument("url", metavar="URL", help="export URL (http or https); session_id may be in it")
    bp.add_argument("--token", help="session_id to add to the URL when it has none")
    bp.add_argument("--format", choices=("raw", "vhd"), help="export format (default: the URL's, else raw)")
    bp.add_argument(
        "--stall",
        action="append",
        default=[],
        metavar="SECONDS[@FRACTION]",
        help="stop reading for SECONDS at FRACTION of the body (repeatable; default fraction from --stall-at)",
    )
    bp.add_argument(
        "--stall-at",
        action="append",
        type=_fraction,
        default=[],
        metavar="FRACTION",
        help="where the n-th --stall happens (default 0.5)",
    )
    bp.add_argument("--rate", type=_positive, metavar="BYTES_PER_S", help="throttle reading to this rate")
    bp.add_argument("--rate-at", type=_fraction, default=0.0, metavar="FRACTION", help="start throttling here")
    bp.add_argument("--rate-for", type=_positive, metavar="SECONDS", help="throttle only this long")
    bp.add_argument("--disconnect-at", type=_fraction, metavar="FRACTION", help="close the connection here")
    bp.add_argument(
        "--rcvbuf",
        type=int,
        default=64 * 1024,
        metavar="BYTES",
        help="client socket receive buffer; small makes stalls bite (0: kernel default; default 65536)",
    )
    bp.add_argument(
        "--timeout",
        type=_seconds,
        default=600.0,
        metavar="SECONDS",
        help="give up when connecting, the TLS handshake or a wait for a byte takes longer (default 600)",
    )
    bp.add_argument(
        "--deadline", type=_seconds, metavar="SECONDS", help="give up when the whole run takes longer (see below)"
    )
    bp.add_argument("--expect-size", type=_size, metavar="BYTES", help="size of the disk the export must declare")
    bp.add_argument("--max-size", type=_size, metavar="BYTES", help="refuse an export declaring a larger disk")
    check = bp.add_mutually_exclusive_group()
    check.add_argument("--expect-sha256", metavar="HEX", help="sha256 the disk content must have")
    check.add_argument("--expect-disk", type=Path, metavar="PATH", help="raw disk the content must equal")
    bp.add_argument(
        "--base-disk",
        type=Path,
        metavar="PATH",
        help="delta export (base= in the URL): the base's raw disk; a VHD delta is applied onto it and the "
        "rebuilt disk checked, a raw delta is checked as XAPI sends it (new data where changed, zeros elsewhere)",
    )
    bp.add_argument("--output", type=Path, metavar="PATH", help="also save the body (as received) here")
    bp.add_argument("--insecure", action="store_true", help="https: do not verify the server's certificate")
    bp.add_argument("--cafile", type=Path, help="https: CA bundle to verify the server with")
    add_json_flag(bp)
    bp.set_defaults(func=run_backpressure)


def plan_from_args(args: argparse.Namespace) -> verify.ClientPlan:
    stalls = []
    for index, text in enumerate(args.stall):
        seconds_text, sep, at_text = text.partition("@")
        try:
            seconds = float(seconds_text)
            at = float(at_text) if sep else (args.stall_at[index] if index < len(args.stall_at) else 0.5)
        except ValueError:
            raise UsageError(f"--stall {text!r} is not SECONDS[@FRACTION]") from None
        stalls.append(verify.Stall(at, seconds))
    if len(args.stall_at) > len(args.stall):
        raise UsageError("--stall-at without a matching --stall")
    return verify.ClientPlan(
        stalls=tuple(stalls),
        rate=args.rate,
        rate_at=args.rate_at,
        rate_for=args.rate_for,
        disconnect_at=args.disconnect_at,
        rcvbuf=args.rcvbuf or None,
        connect_timeout=args.timeout,
        read_timeout=args.timeout,
        deadline=args.deadline,
    )


def run_backpressure(ctx: Context) -> int:
    args = ctx.args
    report = verify.backpressure(
        args.url,
        plan_from_args(args),
        token=args.token,
        fmt=args.format,
        expect_sha256=args.expect_sha256,
        expect_disk=args.expect_disk,
        expect_size=args.expect_size,
        max_size=args.max_size,
        save_to=args.output,
        insecure=args.insecure,
        cafile=args.cafile,
        base_disk=args.base_disk,
    )
    if args.json:
        emit_json(report)
    else:
        received = f"{report.bytes_received} of {report.content_length if report.content_length is not None else '?'}"
        rows = [
            ("url", report.url),
            ("format", report.format),
            ("status", report.status if report.status is not None else "-"),
            ("received", received),
            ("disk size", report.disk_size if report.disk_size is not None else "-"),
            ("duration", f"{report.duration_s:.2f} s (deadline {report.deadline_s:g} s)"),
            ("outcome", report.outcome),
            ("sha256", report.sha256 or "-"),
            ("expected", report.expected or "-"),
            ("match", {True: "yes", False: "NO", None: "-"}[report.match]),
            *(("event", event) for event in report.events),
            ("detail", report.detail),
        ]
        print_table(("check", "value"), rows)
    if not report.ok:
        raise VerifyError(f"export {report.outcome}: {report.detail}")
    return 0
