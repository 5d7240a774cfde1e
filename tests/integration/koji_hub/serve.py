"""Serve a koji hub's WSGI application on 127.0.0.1 (run by the koji hub fixture under Debian's python3).

    /usr/bin/python3 serve.py SOURCE HUB_CONF PORT_FILE

SOURCE is a koji source checkout (its ``koji`` and ``kojihub`` packages are imported from there,
never copied). The server binds an ephemeral port on 127.0.0.1 and writes it to PORT_FILE once it
accepts connections. It runs until SIGTERM. Each request gets its own thread, like a WSGI server
in front of a real hub, so a long upload does not stall the other clients.
"""

from __future__ import annotations

import signal
import sys
from pathlib import Path
from socketserver import ThreadingMixIn
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server


class _ThreadingWSGIServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _BoundedInput:
    """``wsgi.input`` that ends at Content-Length, as mod_wsgi and gunicorn give it.

    wsgiref hands the raw socket over, and the hub reads its request until EOF.
    """

    def __init__(self, stream, length: int) -> None:  # type: ignore[no-untyped-def]
        self._stream, self._left = stream, length

    def read(self, size: int = -1) -> bytes:
        if self._left <= 0:
            return b""
        size = self._left if size < 0 else min(size, self._left)
        data: bytes = self._stream.read(size)
        self._left -= len(data)
        return data


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


def main() -> None:
    source, hub_conf, port_file = sys.argv[1:4]
    sys.path.insert(0, source)
    from kojihub.kojixmlrpc import application  # type: ignore[import-not-found]  # the checkout's hub code

    def app(environ, start_response):  # type: ignore[no-untyped-def]
        # What mod_wsgi's SetEnv does for a real hub: tell it where its configuration lives.
        environ["koji.hub.ConfigFile"] = hub_conf
        environ["koji.hub.ConfigDir"] = hub_conf + ".d"
        environ["wsgi.input"] = _BoundedInput(environ["wsgi.input"], int(environ.get("CONTENT_LENGTH") or 0))
        return application(environ, start_response)

    server = make_server("127.0.0.1", 0, app, server_class=_ThreadingWSGIServer, handler_class=_QuietHandler)
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(SystemExit(0)))
    tmp = port_file + ".tmp"
    with open(tmp, "w") as f:
        f.write(str(server.server_port))
    Path(tmp).replace(port_file)
    try:
        server.serve_forever(poll_interval=0.2)
    finally:
        server.server_close()


if __name__ == "__main__":
    main()
