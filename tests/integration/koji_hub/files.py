"""Serve a koji hub's files dir read-only over HTTP on 127.0.0.1 (what ``topurl`` points at).

python -m tests.integration.koji_hub.files TOPDIR PORT_FILE
"""

from __future__ import annotations

import functools
import signal
import sys
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path


class _Quiet(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


def main() -> None:
    topdir, port_file = sys.argv[1:3]
    handler = functools.partial(_Quiet, directory=topdir)
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(SystemExit(0)))
    with open(port_file + ".tmp", "w") as f:
        f.write(str(server.server_port))
    Path(port_file + ".tmp").replace(port_file)
    try:
        server.serve_forever(poll_interval=0.2)
    finally:
        server.server_close()


if __name__ == "__main__":
    main()
