"""Every use of the koji client library (PyPI ``koji``) in xcpbuild, with its errors translated.

Profiles are read as koji reads them (``koji.read_config``: /etc/koji.conf, /etc/koji.conf.d/,
~/.koji/config.d/, ~/.koji/config, or one ``--config`` file), and a session logs in with the
profile's ``authtype``: ``noauth``, ``password``, ``ssl`` (client certificate) or ``kerberos``
(GSSAPI, keytab or credential cache); with no authtype, koji's own order (certificate if the
file exists, then user+password, then GSSAPI). Retries are koji's own: ClientSession retries a
call on connection errors when it is safe (logged in, or ``anon_retry``), ``max_retries`` times,
``retry_interval`` apart, both from the profile.

No koji or requests exception leaves this module: :func:`translate` turns them into KojiError
(one line plus a hint). Nothing here logs or returns a password, a keytab or a session key.
"""

from __future__ import annotations

import configparser
import hashlib
import os
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import requests

from xcpbuild.errors import ConfigError, KojiError, ToolMissingError

try:
    import koji
except ModuleNotFoundError as missing:  # an optional extra: every verb but koji's works without it
    if missing.name != "koji":
        raise
    raise ToolMissingError(
        "the koji verbs need the koji client library, which is not installed",
        hint="pip install 'xcpbuild[koji]' (from a checkout: pip install -e '.[koji]'; it builds gssapi, "
        "which needs libkrb5-dev)",
    ) from None
from xcpbuild.log import get_logger

log = get_logger("koji")

AUTH_TYPES = ("noauth", "password", "ssl", "kerberos")
# Profile keys that are secrets: never printed, never written into a record.
SECRET_KEYS = frozenset({"password", "keytab", "cert", "serverca", "ca", "principal"})
_CHUNK = 1 << 20


@dataclass(frozen=True)
class Profile:
    """A koji client profile (what ``koji --profile NAME`` would use)."""

    name: str
    server: str
    topurl: str
    authtype: str | None
    options: dict[str, Any] = field(repr=False, compare=False)

    def public(self) -> dict[str, str]:
        """What a record or a log may say about the profile: no credentials."""
        return {"profile": self.name, "server": _without_userinfo(self.server), "authtype": self.authtype or "auto"}


def _without_userinfo(url: str) -> str:
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url
    host = parts.hostname or ""
    netloc = f"{host}:{parts.port}" if parts.port else host
    return parts._replace(netloc=netloc).geturl()


def load_profile(name: str, config_file: Path | None = None) -> Profile:
    """Read profile ``name`` the way the koji CLI does; ConfigError when it is missing or unusable."""
    try:
        options = dict(koji.read_config(name, user_config=str(config_file) if config_file else None))
    except koji.ConfigurationError as exc:
        raise ConfigError(
            f"koji profile {name!r}: {exc}",
            hint="profiles live in /etc/koji.conf.d/*.conf or ~/.koji/config (a [NAME] section with server "
            "and topurl); --koji-config FILE reads one file",
        ) from exc
    # koji.read_config leaves out the password login's credentials (the CLI takes them as
    # options); read them from the profile's own section, or from the environment.
    raw = _raw_section(name, config_file)
    for key, variable in (("user", "XCPBUILD_KOJI_USER"), ("password", "XCPBUILD_KOJI_PASSWORD")):
        value = os.environ.get(variable) or raw.get(key)
        if value and not options.get(key):
            options[key] = value
    authtype = options.get("authtype")
    if authtype is not None and authtype not in AUTH_TYPES:
        raise ConfigError(
            f"koji profile {name!r}: authtype {authtype!r} is not one of {', '.join(AUTH_TYPES)}",
            hint="set authtype in the profile to one koji supports",
        )
    if not options.get("server"):
        raise ConfigError(f"koji profile {name!r} has no server URL", hint="add `server = https://HUB/kojihub`")
    return Profile(name, str(options["server"]), str(options.get("topurl") or ""), authtype, options)


def _config_files(config_file: Path | None) -> list[Path]:
    """The files koji reads a profile from, in its order (later ones win)."""
    if config_file is not None:
        return [config_file]
    home = Path("~/.koji").expanduser()
    files = [Path("/etc/koji.conf"), *sorted(Path("/etc/koji.conf.d").glob("*.conf"))]
    return [*files, *sorted((home / "config.d").glob("*.conf")), home / "config"]


def _raw_section(name: str, config_file: Path | None) -> dict[str, str]:
    parser = configparser.RawConfigParser()
    for path in _config_files(config_file):
        try:
            parser.read(path)
        except configparser.Error:
            continue  # koji.read_config already reported a broken file
    return dict(parser.items(name)) if parser.has_section(name) else {}


def translate(exc: BaseException, what: str, server: str = "") -> KojiError:
    """One KojiError, with a hint, for an exception the koji library or requests raised."""
    where = f" ({_without_userinfo(server)})" if server else ""
    if isinstance(exc, koji.AuthExpired):
        return KojiError(
            f"{what}: the koji session expired{where}",
            hint="log in again (kerberos: `kinit`; certificate: renew it), then rerun; nothing was changed",
        )
    if isinstance(exc, koji.AuthError):
        return KojiError(
            f"{what}: koji refused the login{where}: {_first_line(exc)}",
            hint="check user/password, the certificate or the kerberos principal in the profile",
        )
    if isinstance(exc, koji.ActionNotAllowed):
        return KojiError(
            f"{what}: not allowed by the hub{where}: {_first_line(exc)}",
            hint="ask a koji admin for the permission (admin, tag, build or the content generator's access)",
        )
    if isinstance(exc, koji.ServerOffline):
        return KojiError(f"{what}: the koji hub is offline{where}", hint="try again later; nothing was changed")
    if isinstance(exc, requests.exceptions.SSLError):
        return KojiError(
            f"{what}: TLS failed talking to the hub{where}: {_first_line(exc)}",
            hint="check `serverca` (or `no_ssl_verify`) in the profile",
        )
    if isinstance(exc, (requests.exceptions.ConnectionError, requests.exceptions.Timeout, ConnectionError)):
        return KojiError(
            f"{what}: cannot reach the koji hub{where}",
            hint="check `server` in the profile and the network; koji retried the call where that is safe "
            "(max_retries, retry_interval in the profile)",
        )
    if isinstance(exc, requests.exceptions.HTTPError):
        return KojiError(f"{what}: HTTP error from koji{where}: {_first_line(exc)}")
    if isinstance(exc, koji.GenericError):
        return KojiError(f"{what}: the hub said: {_first_line(exc)}", hint="the hub refused the call; nothing changed")
    if isinstance(exc, koji.Fault):
        return KojiError(f"{what}: hub fault {exc.faultCode}: {_first_line(exc.faultString)}")
    return KojiError(f"{what}: {type(exc).__name__}: {_first_line(exc)}")


def _first_line(exc: object) -> str:
    text = str(exc).strip()
    return text.splitlines()[-1].strip() if text else type(exc).__name__


_TRANSLATED = (koji.GenericError, koji.Fault, requests.exceptions.RequestException, ConnectionError)


class Hub:
    """A session on one koji hub; every call goes through :meth:`call` (errors translated)."""

    def __init__(self, profile: Profile, session: Any) -> None:
        self.profile = profile
        self._session = session
        self.pathinfo = koji.PathInfo(topdir=profile.topurl) if profile.topurl else None
        self._http = requests.Session()

    def call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        try:
            return getattr(self._session, method)(*args, **kwargs)
        except _TRANSLATED as exc:
            raise translate(exc, method, self.profile.server) from exc

    def multicall(self, calls: list[tuple[str, tuple[Any, ...], dict[str, Any]]]) -> list[Any]:
        """Several calls in one request (one round trip); results in order, first failure raised."""
        try:
            with self._session.multicall(strict=True) as m:
                pending = [getattr(m, name)(*args, **kwargs) for name, args, kwargs in calls]
            return [p.result for p in pending]
        except _TRANSLATED as exc:
            raise translate(exc, calls[0][0] if calls else "multicall", self.profile.server) from exc

    @property
    def user(self) -> str | None:
        info = self.call("getLoggedInUser")
        return str(info["name"]) if info else None

    def upload(self, path: Path, serverdir: str, progress: Callable[[int, int], None] | None = None) -> None:
        """Upload one file into the hub's work dir ``serverdir`` (koji's chunked, checksummed upload)."""

        def callback(_uploaded: int, total: int, piece: int, _t1: float, _t2: float) -> None:
            if progress is not None:
                progress(min(_uploaded + piece, total), total)

        self.call("uploadWrapper", str(path), serverdir, name=path.name, callback=callback)

    def file_url(self, relpath: str) -> str:
        if not self.profile.topurl:
            raise KojiError(
                f"koji profile {self.profile.name!r} has no topurl: cannot download files",
                hint="add `topurl = https://HUB/kojifiles` to the profile",
            )
        return f"{self.profile.topurl.rstrip('/')}/{relpath.lstrip('/')}"

    def download(self, url: str, dest: Path, *, expect_size: int | None = None, tries: int = 3) -> int:
        """Download ``url`` to ``dest`` (written to a temp name, then renamed); bytes written."""
        dest.parent.mkdir(parents=True, exist_ok=True)
        partial = dest.with_name(f".{dest.name}.part-{os.getpid()}-{random.randrange(1 << 30)}")
        for attempt in range(1, tries + 1):
            try:
                with self._http.get(url, stream=True, timeout=(10, 120)) as response:
                    if response.status_code == 404:
                        raise KojiError(f"koji has no file at {url}", hint="the build's files may have been pruned")
                    response.raise_for_status()
                    size = 0
                    with open(partial, "wb") as out:
                        for chunk in response.iter_content(_CHUNK):
                            out.write(chunk)
                            size += len(chunk)
                if expect_size is not None and size != expect_size:
                    raise requests.exceptions.ConnectionError(f"short download: {size} of {expect_size} bytes")
                partial.replace(dest)
                return size
            except (requests.exceptions.ConnectionError, requests.exceptions.Timeout) as exc:
                partial.unlink(missing_ok=True)
                if attempt == tries:
                    raise translate(exc, f"download {url}") from exc
                time.sleep(0.5 * attempt)
            except requests.exceptions.RequestException as exc:
                partial.unlink(missing_ok=True)
                raise translate(exc, f"download {url}") from exc
            except BaseException:
                partial.unlink(missing_ok=True)
                raise
        raise AssertionError("unreachable")

    def text(self, url: str, tail_bytes: int = 16384) -> str | None:
        """The end of a text file on the files server (a log excerpt), or None if it is not there."""
        try:
            response = self._http.get(url, timeout=(10, 60))
        except requests.exceptions.RequestException:
            return None
        if response.status_code != 200:
            return None
        return response.content[-tail_bytes:].decode("utf-8", "replace")

    def close(self) -> None:
        try:
            if self._session.logged_in:
                self._session.logout()
        except _TRANSLATED:
            pass  # the session ends on the hub by itself; nothing to undo
        self._http.close()


def _login(session: Any, profile: Profile) -> None:
    opts = profile.options
    authtype = profile.authtype
    cert = str(Path(str(opts["cert"])).expanduser()) if opts.get("cert") else ""
    if authtype == "noauth":
        return
    if authtype == "ssl" or (authtype is None and cert and Path(cert).is_file()):
        session.ssl_login(cert, None, opts.get("serverca"), proxyuser=opts.get("runas"))
    elif authtype == "password" or (authtype is None and opts.get("user") and opts.get("password")):
        # ClientSession's options leave the credentials out; login reads them from there.
        session.opts["user"], session.opts["password"] = opts.get("user"), opts.get("password")
        session.login()
    elif authtype == "kerberos" or authtype is None:
        session.gssapi_login(principal=opts.get("principal"), keytab=opts.get("keytab"), proxyuser=opts.get("runas"))
    if not session.logged_in:
        raise koji.AuthError("the hub did not open a session")


def connect(profile: Profile, *, login: bool = True) -> Hub:
    """A session on the profile's hub, logged in by the profile's authtype unless ``login`` is False."""
    session_opts = koji.grab_session_options(profile.options)
    session = koji.ClientSession(profile.server, opts=session_opts)
    try:
        session.getAPIVersion()  # fail fast (and translated) when the hub is not there
        if login:
            _login(session, profile)
    except _TRANSLATED as exc:
        raise translate(exc, "connect", profile.server) from exc
    log.debug("koji: connected to %s as %s", _without_userinfo(profile.server), profile.authtype or "auto")
    return Hub(profile, session)


def unique_serverdir(prefix: str = "xcpbuild") -> str:
    """A fresh directory name under the hub's work/ for one upload set (as the koji CLI makes)."""
    return f"{prefix}/{time.strftime('%Y%m%d%H%M%S')}.{random.randrange(1 << 40):x}"


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


# State names as koji numbers them, for the pipeline (which does not import koji itself).
TASK_STATES: dict[int, str] = {v: k for k, v in koji.TASK_STATES.items() if isinstance(v, int)}
BUILD_STATES: dict[int, str] = {v: k for k, v in koji.BUILD_STATES.items() if isinstance(v, int)}


def task_path(task_id: int) -> str:
    """The task's output folder, relative to topurl (``work/tasks/N/ID``)."""
    return str(koji.PathInfo(topdir="").task(task_id)).lstrip("/")


def build_rpm_path(build: dict[str, Any], rpm: dict[str, Any], sigkey: str | None = None) -> str:
    """Where an RPM of a build is under topurl: the signed copy for ``sigkey``, else the original."""
    paths = koji.PathInfo(topdir="")
    base = paths.build(build).lstrip("/")
    return f"{base}/{paths.signed(rpm, sigkey) if sigkey else paths.rpm(rpm)}"
