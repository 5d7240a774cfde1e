"""The upgrade check before the swap, with real rpmbuild-made packages, gpg, createrepo_c and dnf.

The live channel holds app-1.0 (Requires: libfoo < 2) and libfoo-1.0. A staged libfoo-2.0
installs fine into an empty root, so the new-package check alone lets it through; a host that
runs app cannot upgrade to it. Publish must refuse it with dnf's reason and leave the live
repository as it was; a compatible libfoo-1.1 goes through.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import need_tool
from tests.fixtures.gpgkeys import GpgTestKey, make_key, stop_agent
from tests.fixtures.repotree import Arg, cli, snapshot
from tests.fixtures.rpms import make_rpm
from xcpbuild.errors import VerifyError
from xcpbuild.pipeline.publish import publish

RELEASE = "8.3"


@pytest.fixture(scope="module")
def key(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GpgTestKey]:
    need_tool("rpmbuild", "rpmsign", "rpmkeys", "gpg", "dnf")
    made = make_key(tmp_path_factory.mktemp("key"))
    yield made
    stop_agent(made)


@pytest.fixture
def live(tmp_path: Path, key: GpgTestKey) -> Path:
    root = tmp_path / "repo"
    app = make_rpm(tmp_path, "app", requires=["libfoo < 2"])
    libfoo = make_rpm(tmp_path, "libfoo")
    publish.publish([app, libfoo], root, RELEASE, "testing", key=key)
    return root


def test_an_update_that_breaks_an_installed_package_is_refused(tmp_path: Path, key: GpgTestKey, live: Path) -> None:
    before = snapshot(live)
    breaking = make_rpm(tmp_path, "libfoo", version="2.0")
    with pytest.raises(VerifyError) as caught:
        publish.publish([breaking], live, RELEASE, "testing", key=key)
    message = caught.value.message
    assert "cannot upgrade the live packages" in message
    assert "app-1.0-1.noarch" in message and "libfoo < 2" in message, message
    assert "unchanged" in (caught.value.hint or "")
    assert snapshot(live) == before


def test_repoclosure_names_the_unresolved_dependency(tmp_path: Path, key: GpgTestKey, live: Path) -> None:
    """Hosts on base only have nothing of testing installed: repoclosure still sees app's broken need."""
    before = snapshot(live)
    breaking = make_rpm(tmp_path, "libfoo", version="2.0")
    with pytest.raises(VerifyError) as caught:
        publish.publish([breaking], live, RELEASE, "testing", key=key, upgrade_from=["base"])
    assert caught.value.message == "repoclosure: app-1.0-1.noarch has unresolved dependencies: libfoo < 2"
    assert snapshot(live) == before


def test_a_compatible_update_is_upgraded_to_and_published(tmp_path: Path, key: GpgTestKey, live: Path) -> None:
    fixed = make_rpm(tmp_path, "libfoo", version="1.1")
    report = publish.publish([fixed], live, RELEASE, "testing", key=key)
    (binary,) = [r for r in report.repos if r.path.name == "x86_64"]
    assert binary.added == ["libfoo-1.1-1.noarch"]
    assert binary.upgrade_checked == ["app-1.0-1.noarch", "libfoo-1.1-1.noarch"]


def test_the_publish_cli_checks_upgrades_from_the_channels_hosts_run(tmp_path: Path, key: GpgTestKey) -> None:
    """Hosts run base (app needs libfoo < 2): testing's libfoo-2.0 passes its own check, not `--upgrade-from base`."""
    root = tmp_path / "repo"
    publish.publish([make_rpm(tmp_path, "app", requires=["libfoo < 2"]), make_rpm(tmp_path, "libfoo")], root, RELEASE,
                    "base", key=key)  # fmt: skip
    common: list[Arg] = ["publish", make_rpm(tmp_path, "libfoo", version="2.0"), "--repo", root, "--release", RELEASE,
              "--channel", "testing", "--sign-key", key.fingerprint, "--gnupg-home", key.home]  # fmt: skip
    before = snapshot(root)
    done = cli([*common, "--upgrade-from", "base"])
    assert done.returncode == 14, done.stderr
    assert "cannot upgrade the live packages" in done.stderr and "libfoo < 2" in done.stderr
    assert snapshot(root) == before
    done = cli(common)  # the default: the live packages of testing, of which there are none
    assert done.returncode == 0, done.stderr
    assert "libfoo-2.0-1.noarch" in done.stdout
