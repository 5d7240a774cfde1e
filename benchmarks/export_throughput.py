"""Raw export throughput of the reference export server vs nginx (sendfile on), same file, same client.

Usage: python3 benchmarks/export_throughput.py [--size-mib 2048] [--runs 5]

Target: export server / nginx >= 1.0 (medians of alternating runs).
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

from common import TOKEN, GiB, MiB, Proc, fetch, free_port, make_disk, median, start_export_server, warm

NGINX_CONF = """\
daemon off;
master_process on;
worker_processes 1;
pid {tmp}/nginx.pid;
error_log {tmp}/nginx-error.log;
events {{ worker_connections 64; }}
http {{
    access_log off;
    sendfile on;
    tcp_nopush on;
    default_type application/octet-stream;
    client_body_temp_path {tmp}/body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
    server {{
        listen 127.0.0.1:{port};
        root {tmp}/www;
    }}
}}
"""


def start_nginx(tmp: Path, port: int) -> Proc:
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    if not Path(nginx).exists():
        raise SystemExit("nginx is not installed (apt-get install -y nginx-light)")
    conf = tmp / "nginx.conf"
    conf.write_text(NGINX_CONF.format(tmp=tmp, port=port))
    proc = Proc([nginx, "-c", str(conf), "-p", str(tmp), "-e", str(tmp / "nginx-error.log")], tmp / "nginx.log")
    probe = Path(tmp / "www" / "probe")
    probe.write_bytes(b"ok")
    for _ in range(100):  # nginx prints nothing when ready: poll until it answers
        try:
            fetch(port, "/probe")
            return proc
        except (OSError, RuntimeError):
            time.sleep(0.05)
    proc.stop()
    raise SystemExit(f"nginx did not start; see {tmp / 'nginx-error.log'}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size-mib", type=int, default=2 * GiB // MiB)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--workdir", type=Path, default=Path("/var/tmp"))
    args = parser.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="xcpbuild-bench-", dir=args.workdir))
    tmp.chmod(0o755)  # nginx workers run as www-data
    (tmp / "www").mkdir(mode=0o755)
    servers: list[Proc] = []
    try:
        disk = make_disk(tmp / "www" / "disk.raw", args.size_mib * MiB)
        disk.chmod(0o644)
        ours, our_port = start_export_server({"disk": disk}, tmp / "server.log")
        servers.append(ours)
        nginx_port = free_port()
        servers.append(start_nginx(tmp, nginx_port))
        targets = {
            "xcpbuild export server": (our_port, f"/export_raw_vdi?session_id={TOKEN}&vdi=disk&format=raw"),
            "nginx (sendfile on)": (nginx_port, "/disk.raw"),
        }
        for port, target in targets.values():  # warm-up, untimed
            fetch(port, target)
        rates: dict[str, list[float]] = {name: [] for name in targets}
        for _ in range(args.runs):
            for name, (port, target) in targets.items():
                warm(disk)
                got, seconds = fetch(port, target)
                assert got == disk.stat().st_size
                rates[name].append(got / seconds / MiB)
        print(f"raw export of a page-cached {args.size_mib} MiB file, {args.runs} alternating runs, same client")
        for name, values in rates.items():
            print(f"  {name:24s} median {median(values):8.0f} MiB/s  (min {min(values):.0f}, max {max(values):.0f})")
        ratio = median(rates["xcpbuild export server"]) / median(rates["nginx (sendfile on)"])
        best = max(rates["xcpbuild export server"]) / max(rates["nginx (sendfile on)"])
        print(f"ratio export server / nginx: {ratio:.2f}x of medians, {best:.2f}x of best runs  (target >= 1.0x)")
        print(f"  load average while measuring: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    finally:
        for proc in servers:
            proc.stop()
        shutil.rmtree(tmp, ignore_errors=True)
        os.sync()


if __name__ == "__main__":
    main()
