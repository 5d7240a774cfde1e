"""A real koji hub on this machine, for the koji integration tests and the koji benchmark.

What it brings up, all under one temp dir and all stopped by pid in ``stop``:

- a PostgreSQL 15 cluster of its own (Debian's ``postgresql``; ``initdb`` in the temp dir, the
  server listening only on a unix socket in that dir), loaded with ``schemas/schema.sql`` from
  the koji source checkout, and an ``admin`` user with a password and the admin permission;
- the hub's WSGI application (``kojihub.kojixmlrpc.application`` from the checkout) under a
  threading ``wsgiref`` server on 127.0.0.1, run by Debian's ``/usr/bin/python3``, which has the
  hub's dependencies as Debian packages (python3-psycopg2, -rpm, -defusedxml, -dateutil,
  -requests, -six): the hub needs the rpm bindings, and those only exist for the system python;
- the hub's files dir (``KojiDir``) served over HTTP on 127.0.0.1 (``topurl`` for downloads);
- tags and a target in XCP-ng's shape: ``vX.Y-incoming`` … ``vX.Y-updates``, a ``vX.Y-build``
  build tag for x86_64, and the target ``vX.Y-incoming`` building from it into incoming.

The koji source comes from ``XCPBUILD_KOJI_SOURCE`` and is only read, never copied.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

PG_BIN = Path("/usr/lib/postgresql/15/bin")
SYSTEM_PYTHON = Path("/usr/bin/python3")
HUB_MODULES = ("psycopg2", "rpm", "defusedxml", "dateutil", "requests", "six")
ADMIN = "kojiadmin"
ADMIN_PASSWORD = "hub-fixture-password"
PIPELINE = ("incoming", "ci", "testing", "candidates", "updates")


def missing_prerequisites(source: Path | None) -> str | None:
    """Why a hub cannot be brought up here, or None when everything is there."""
    if source is None:
        return "XCPBUILD_KOJI_SOURCE (a koji source checkout)"
    if not (source / "kojihub" / "kojixmlrpc.py").is_file() or not (source / "schemas" / "schema.sql").is_file():
        return f"a koji source checkout at {source} (kojihub/ and schemas/schema.sql)"
    if not (PG_BIN / "initdb").exists():
        return "PostgreSQL 15 (Debian package postgresql)"
    if not SYSTEM_PYTHON.exists():
        return "/usr/bin/python3"
    probe = subprocess.run(
        [str(SYSTEM_PYTHON), "-c", "import " + ", ".join(HUB_MODULES)], capture_output=True, text=True, check=False
    )
    if probe.returncode != 0:
        return (
            "the hub's Python modules for /usr/bin/python3 (python3-psycopg2 python3-rpm ...): "
            + (probe.stderr.strip().splitlines() or ["?"])[-1]
        )
    return None


@dataclass
class KojiHub:
    source: Path
    root: Path
    release: str = "8.3"
    hub_url: str = ""
    topurl: str = ""
    topdir: Path = field(init=False)
    _procs: list[subprocess.Popen[bytes]] = field(default_factory=list)
    _db_dir: Path | None = None

    def __post_init__(self) -> None:
        self.topdir = self.root / "kojifiles"

    # -- life cycle --------------------------------------------------------------------------
    def start(self) -> KojiHub:
        try:
            self._start_database()
            self._start_hub()
            self._start_files()
            self._make_tags()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        for proc in reversed(self._procs):
            if proc is self._procs[0]:
                self._stop_postgres()
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        self._procs.clear()
        if self._db_dir is not None:
            shutil.rmtree(self._db_dir, ignore_errors=True)
            self._db_dir = None

    def _stop_postgres(self) -> None:
        """Fast shutdown of the server itself: runuser, its parent, does not pass signals on."""
        pid_file = self._db_dir / "data" / "postmaster.pid" if self._db_dir else None
        try:
            pid = int(pid_file.read_text().split()[0]) if pid_file else 0
        except (OSError, ValueError, IndexError):
            return
        try:
            os.kill(pid, signal.SIGINT)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + 20
        while pid_file is not None and pid_file.exists() and time.monotonic() < deadline:
            time.sleep(0.05)

    # -- PostgreSQL --------------------------------------------------------------------------
    def _as_db_user(self) -> list[str]:
        # PostgreSQL refuses to run as root: use Debian's postgres account then.
        return ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []

    def _start_database(self) -> None:
        # Its own dir in /tmp: the postgres account must reach it, and a pytest tmp dir is private.
        db = self._db_dir = Path(tempfile.mkdtemp(prefix="xcpbuild-kojidb-"))
        db.chmod(0o755)
        if os.geteuid() == 0:
            shutil.chown(db, "postgres", "postgres")
        data, self.socket_dir = db / "data", db
        subprocess.run(
            [*self._as_db_user(), str(PG_BIN / "initdb"), "-D", str(data), "-A", "trust", "-U", "koji", "-E", "UTF8"],
            check=True,
            capture_output=True,
        )
        log = open(db / "server.log", "wb")  # noqa: SIM115 (the server keeps it open)
        self._procs.append(
            subprocess.Popen(
                [
                    *self._as_db_user(),
                    str(PG_BIN / "postgres"),
                    "-D",
                    str(data),
                    "-k",
                    str(db),
                    "-c",
                    "listen_addresses=",
                    "-c",
                    "fsync=off",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        )
        _wait_for((db / ".s.PGSQL.5432").exists, "PostgreSQL socket", self._procs[-1])
        psql = [*self._as_db_user(), "psql", "-h", str(db), "-U", "koji", "-v", "ON_ERROR_STOP=1", "-q"]
        for _ in range(50):
            if subprocess.run([*psql, "-d", "postgres", "-c", "select 1"], capture_output=True).returncode == 0:
                break
            time.sleep(0.1)
        subprocess.run([*psql, "-d", "postgres", "-c", "create database koji"], check=True, capture_output=True)
        schema = db / "schema.sql"
        shutil.copyfile(self.source / "schemas" / "schema.sql", schema)  # readable by postgres
        schema.chmod(0o644)
        subprocess.run([*psql, "-d", "koji", "-f", str(schema)], check=True, capture_output=True)
        admin_sql = (
            f"insert into users (name, password, status, usertype) values ('{ADMIN}', '{ADMIN_PASSWORD}', 0, 0);"
            "insert into user_perms (user_id, perm_id, creator_id) select u.id, p.id, u.id "
            f"from users u, permissions p where u.name = '{ADMIN}' and p.name = 'admin';"
        )
        subprocess.run([*psql, "-d", "koji", "-c", admin_sql], check=True, capture_output=True)

    # -- hub and files -----------------------------------------------------------------------
    def _start_hub(self) -> None:
        for sub in ("packages", "work", "scratch", "repos"):
            (self.topdir / sub).mkdir(parents=True, exist_ok=True)
        conf = self.root / "hub.conf"
        conf.write_text(
            "[hub]\n"
            "DBName = koji\nDBUser = koji\n"
            f"DBHost = {self.socket_dir}\n"
            f"KojiDir = {self.topdir}\n"
            "LoginCreatesUser = Off\nCheckClientIP = Off\nDisableNotifications = True\n"
            "LogLevel = WARNING\n"
        )
        port_file = self.root / "hub.port"
        log = open(self.root / "hub.log", "wb")  # noqa: SIM115
        serve = Path(__file__).with_name("serve.py")
        self._procs.append(
            subprocess.Popen(
                [str(SYSTEM_PYTHON), str(serve), str(self.source), str(conf), str(port_file)],
                stdout=log,
                stderr=subprocess.STDOUT,
                env={"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"},
            )
        )
        _wait_for(port_file.exists, "koji hub", self._procs[-1])
        self.hub_url = f"http://127.0.0.1:{port_file.read_text()}/kojihub"

    def _start_files(self) -> None:
        port_file = self.root / "files.port"
        log = open(self.root / "files.log", "wb")  # noqa: SIM115
        self._procs.append(
            subprocess.Popen(
                [sys.executable, "-m", "tests.integration.koji_hub.files", str(self.topdir), str(port_file)],
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=Path(__file__).resolve().parents[3],
            )
        )
        _wait_for(port_file.exists, "koji files server", self._procs[-1])
        self.topurl = f"http://127.0.0.1:{port_file.read_text()}"

    # -- XCP-ng's tags -----------------------------------------------------------------------
    def session(self) -> Any:
        import koji

        session = koji.ClientSession(self.hub_url, opts={"user": ADMIN, "password": ADMIN_PASSWORD})
        session.login()
        return session

    def tag_name(self, step: str) -> str:
        return f"v{self.release}-{step}"

    def _make_tags(self) -> None:
        session = self.session()
        build_tag = f"v{self.release}-build"
        session.createTag(build_tag, arches="x86_64")
        for step in PIPELINE:
            session.createTag(self.tag_name(step), arches="x86_64")
        session.createBuildTarget(self.tag_name("incoming"), build_tag, self.tag_name("incoming"))
        session.logout()

    def add_packages(self, names: list[str]) -> None:
        """Put packages on every pipeline tag's package list (koji only tags listed packages)."""
        session = self.session()
        with session.multicall(strict=True) as m:
            for step in PIPELINE:
                for name in names:
                    m.packageListAdd(self.tag_name(step), name, owner=ADMIN)
        session.logout()

    def write_profile(self, config_dir: Path, name: str = "fixture") -> Path:
        """A koji client configuration file for this hub (what ``--profile NAME`` reads)."""
        config_dir.mkdir(parents=True, exist_ok=True)
        path = config_dir / f"{name}.conf"
        path.write_text(
            f"[{name}]\nserver = {self.hub_url}\ntopurl = {self.topurl}\n"
            f"authtype = password\nuser = {ADMIN}\npassword = {ADMIN_PASSWORD}\n"
        )
        return path


def _wait_for(ready, what: str, proc: subprocess.Popen[bytes], timeout: float = 60) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not ready():
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode} before it was ready")
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} was not ready after {timeout:.0f} s")
        time.sleep(0.05)
