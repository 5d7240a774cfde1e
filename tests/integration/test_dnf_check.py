"""The publish's dnf check against hand-made repositories it must refuse.

Two ways in: ``dnf.check_install``, where dnf imports the key itself on the way,
and the publish's early helper (``dnf.PublishChecks``), which trusts the key
before the repository exists (its keyring in dnf's cache, the root's rpm
database) and is handed the repository once it is made. Each repository holds
``good`` (signed by the trusted key) and ``zbad`` (broken in one way); its
repomd is signed by the trusted key unless the case is about that. ``zbad``
sorts last, so its signature is judged by the batched rpmkeys run, not by the
one package dnf checks itself to import the key.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.conftest import need_tool
from tests.fixtures.gpgkeys import GpgTestKey, make_key, stop_agent
from tests.fixtures.rpms import make_rpm
from xcpbuild.adapters import createrepo, dnf, gpg, rpmsign
from xcpbuild.errors import VerifyError

RELEASE = "8.3"


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[GpgTestKey, GpgTestKey]]:
    need_tool("rpmbuild", "rpmsign", "rpmkeys", "gpg", "dnf")
    trusted = make_key(tmp_path_factory.mktemp("trusted"))
    other = make_key(tmp_path_factory.mktemp("other"), uid="someone else <other@example.invalid>")
    yield trusted, other
    stop_agent(trusted)
    stop_agent(other)


@pytest.fixture(scope="module")
def rpms(keys: object, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("rpms")
    return {"good": make_rpm(d, "good", "1.0"), "zbad": make_rpm(d, "zbad", "1.0", requires=["good"])}


def make_repo(
    root: Path,
    rpms: dict[str, Path],
    trusted: GpgTestKey,
    *,
    zbad_key: GpgTestKey | None,
    repomd_key: GpgTestKey,
    damage: bool = False,
) -> Path:
    packages = root / "Packages"
    packages.mkdir(parents=True)
    good, zbad = (shutil.copyfile(rpms[n], packages / rpms[n].name) for n in ("good", "zbad"))
    rpmsign.sign([good], trusted)
    if zbad_key is not None:
        rpmsign.sign([zbad], zbad_key)
    createrepo.build_repodata(root, [f"Packages/{good.name}", f"Packages/{zbad.name}"], root / "repodata")
    if damage:  # after the metadata recorded its checksum
        data = bytearray(zbad.read_bytes())
        data[-10] ^= 1
        zbad.write_bytes(bytes(data))
    repomd = root / "repodata" / "repomd.xml"
    gpg.detach_sign(repomd_key, repomd, repomd.with_name("repomd.xml.asc"))
    return root


def check(way: str, root: Path, key: GpgTestKey, make: Callable[[], Path]) -> dnf.InstallResult:
    """The install check of ``zbad`` in ``root``, which ``make`` fills: before it starts, or once it runs."""
    if way == "library":
        return dnf.check_install([dnf.Repo("staged", make())], ["zbad"], key.public_key, RELEASE)
    root.mkdir(parents=True, exist_ok=True)
    upgrade = dnf.UpgradeRequest(live=(), others=(), packages=())
    install = dnf.InstallRequest((dnf.Repo("staged", root),), ("zbad",), key.public_key)
    with dnf.PublishChecks(RELEASE, upgrade, install) as checks:
        make()
        result, _ = checks.finish()
    return result


WAYS = pytest.mark.parametrize("way", ["library", "publish"])


@WAYS
def test_a_good_repository_passes_and_lists_the_dependencies(
    tmp_path: Path, keys: tuple[GpgTestKey, GpgTestKey], rpms: dict[str, Path], way: str
) -> None:
    trusted, _ = keys
    result = check(
        way, tmp_path, trusted, lambda: make_repo(tmp_path, rpms, trusted, zbad_key=trusted, repomd_key=trusted)
    )
    assert result.installed == ["good-1.0-1.noarch", "zbad-1.0-1.noarch"]
    answer = json.loads(result.output.strip().splitlines()[-1])
    assert (answer["install"] if way == "publish" else answer)["key"] == ("ahead" if way == "publish" else "by dnf")


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("foreign", r"GPG check FAILED: Public key for zbad-1\.0-1\.noarch\.rpm is not installed"),
        ("unsigned", r"GPG check FAILED: Package zbad-1\.0-1\.noarch\.rpm is not signed"),
        ("damaged", r"a package does not match the metadata: \S*/zbad-1\.0-1\.noarch\.rpm does not match the checksum"),
        ("repomd", r"loading the repository metadata failed: .*repomd\.xml GPG signature verification error"),
    ],
)
@WAYS
def test_each_broken_repository_is_refused_naming_the_package_and_the_reason(
    tmp_path: Path, keys: tuple[GpgTestKey, GpgTestKey], rpms: dict[str, Path], case: str, expected: str, way: str
) -> None:
    trusted, other = keys
    zbad_key = {"foreign": other, "unsigned": None}.get(case, trusted)
    repomd_key = other if case == "repomd" else trusted

    def make() -> Path:
        return make_repo(tmp_path, rpms, trusted, zbad_key=zbad_key, repomd_key=repomd_key, damage=case == "damaged")

    with pytest.raises(VerifyError, match=rf"^dnf could not install zbad: {expected}"):
        check(way, tmp_path, trusted, make)


def test_many_packages_are_all_checked(tmp_path: Path, keys: tuple[GpgTestKey, GpgTestKey]) -> None:
    """Several rpmkeys processes share the files: a bad one in any share is found."""
    trusted, other = keys
    packages = tmp_path / "Packages"
    packages.mkdir()
    names = [f"many{i:02d}" for i in range(12)]
    files = [shutil.copyfile(make_rpm(tmp_path / "src", n, "1.0"), packages / f"{n}-1.0-1.noarch.rpm") for n in names]
    rpmsign.sign(files[:-1], trusted)
    rpmsign.sign(files[-1:], other)
    createrepo.build_repodata(tmp_path, [f"Packages/{f.name}" for f in files], tmp_path / "repodata")
    repomd = tmp_path / "repodata" / "repomd.xml"
    gpg.detach_sign(trusted, repomd, repomd.with_name("repomd.xml.asc"))
    with pytest.raises(VerifyError, match=r"Public key for many11-1\.0-1\.noarch\.rpm is not installed") as caught:
        dnf.check_install([dnf.Repo("staged", tmp_path)], names, trusted.public_key, RELEASE)
    assert "many10" not in caught.value.message
    rpmsign.sign(files[-1:], trusted)
    createrepo.build_repodata(tmp_path, [f"Packages/{f.name}" for f in files], tmp_path / "repodata")
    gpg.detach_sign(trusted, repomd, repomd.with_name("repomd.xml.asc"))
    result = dnf.check_install([dnf.Repo("staged", tmp_path)], names, trusted.public_key, RELEASE)
    assert result.installed == sorted(f"{n}-1.0-1.noarch" for n in names)


_FIX_DBPATH = """
import importlib.util, json, sys
from pathlib import Path
spec = importlib.util.spec_from_file_location("check_helper", sys.argv[1])
helper = importlib.util.module_from_spec(spec)
spec.loader.exec_module(helper)
import rpm
fixed = helper.fix_dbpath(Path(sys.argv[2]))
for _ in range(3):  # what libdnf and rpm's commands do: read the configuration again, expand again
    rpm.reloadConfig()
    again = rpm.expandMacro("%{_dbpath}")
print(json.dumps({"fixed": fixed, "again": again, "probe": rpm.expandMacro("%{?_xcpbuild_probe}")}))
"""


def test_rpms_dbpath_is_expanded_by_one_shell_and_the_users_macros_still_apply(tmp_path: Path) -> None:
    """Debian's %_dbpath runs bash at each expansion; fixed once, it runs no more, and ~/.rpmmacros still counts."""
    need_tool("dnf", "rpm", "bash")
    user = tmp_path / "user"
    user.mkdir()
    (user / ".rpmmacros").write_text("%_xcpbuild_probe 42\n")
    calls = tmp_path / "bash-calls"
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    real_bash = shutil.which("bash")
    (bin_dir / "bash").write_text(f'#!/bin/sh\necho "$*" >> {calls}\nexec {real_bash} "$@"\n')
    (bin_dir / "bash").chmod(0o755)
    python = dnf._system_python(shutil.which("dnf") or "dnf")
    helper = Path(dnf.__file__).with_name("dnf_check_helper.py")
    env = {"HOME": str(user), "PATH": f"{bin_dir}:/usr/bin:/bin", "LC_ALL": "C"}
    done = subprocess.run(
        [python, "-I", "-c", _FIX_DBPATH, str(helper), str(tmp_path / "home")],
        env=env, capture_output=True, text=True, check=True,
    )  # fmt: skip
    answer = json.loads(done.stdout)
    expected = subprocess.run(
        ["rpm", "--eval", "%{_dbpath}"], env=env, capture_output=True, text=True, check=True
    ).stdout.strip()
    assert answer["fixed"] == answer["again"] == expected
    assert answer["probe"] == "42"
    shells = calls.read_text().splitlines()
    assert len(shells) == 2, shells  # the helper's one expansion, and the `rpm --eval` above
