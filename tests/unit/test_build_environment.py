"""The xcp-ng-* targets' image inputs, rendered from their facts, against xcp-ng-build-env's conventions.

The base images and mirrors cannot be reached here, so what each image would be
given (repository files, macros, the pre-rpmbuild script, Dockerfile arguments)
is checked as text: the facts of docs/xcp-ng-ecosystem.md, "The build
environment packagers use".
"""

from __future__ import annotations

import configparser
import re
from pathlib import Path
from types import SimpleNamespace

import pytest

from tests.conftest import PROJECT_ROOT
from xcpbuild.errors import ConfigError, UsageError
from xcpbuild.model.target import Target, find_target
from xcpbuild.pipeline.build import build, environment

CONTAINERS = PROJECT_ROOT / "containers"
MIRRORS = {
    "XCPBUILD_XCPNG_MIRROR": "https://xcpng.example.invalid/mirror/",
    "XCPBUILD_CENTOS_VAULT": "https://vault.example.invalid/centos",
    "XCPBUILD_ALMALINUX_VAULT": "https://vault.example.invalid/almalinux",
    "XCPBUILD_EPEL_MIRROR": "https://epel.example.invalid/epel",
}
KEY = "-----BEGIN PGP PUBLIC KEY BLOCK-----\n\nmQINBF...\n-----END PGP PUBLIC KEY BLOCK-----\n"


@pytest.fixture
def variables(tmp_path: Path) -> dict[str, str]:
    key = tmp_path / "RPM-GPG-KEY-xcpng"
    key.write_text(KEY)
    return {**MIRRORS, "XCPBUILD_XCPNG_KEY": str(key)}


def _render(name: str, variables: dict[str, str]) -> tuple[Target, environment.RenderedEnv]:
    target = find_target(CONTAINERS, name)
    return target, environment.render(target, variables, target.base_image)


def _repos(rendered: environment.RenderedEnv, name: str) -> configparser.RawConfigParser:
    parser = configparser.RawConfigParser()
    parser.read_string(rendered.file(f"yum.repos.d/{name}"))
    return parser


def _macros(text: str) -> dict[str, str]:
    return dict(re.findall(r"^%(\w+)\s+(.+)$", text, re.MULTILINE))


@pytest.mark.parametrize(("name", "xenserver"), [("xcp-ng-8.2", None), ("xcp-ng-8.3", "8")])
def test_8x_images_match_xcp_ng_build_env(name: str, xenserver: str | None, variables: dict[str, str]) -> None:
    target, rendered = _render(name, variables)
    release = target.xcpng_release
    args = dict(rendered.build_args)
    assert args["BASE"] == "centos:7.5.1804" and args["DIST"] == f".xcpng{release}"
    assert {"rpm-build", "yum-utils", "epel-release", "gcc"} <= set(args["PACKAGES"].split())
    assert args["EPEL_PACKAGES"].split() == ["epel-rpm-macros"]
    xcpng = _repos(rendered, "xcp-ng.repo")
    binary = [s for s in xcpng.sections() if not s.endswith("-src")]
    enabled = {s.removeprefix("xcp-ng-") for s in binary if xcpng[s]["enabled"] == "1"}
    disabled = {s.removeprefix("xcp-ng-") for s in binary if xcpng[s]["enabled"] == "0"}
    assert enabled == {"base", "updates", "candidates", "testing", "ci"}
    assert disabled == {"incoming", "lab"}  # there for --enablerepo
    for section in xcpng.sections():
        repo = xcpng[section]
        channel = section.removeprefix("xcp-ng-").removesuffix("-src")
        kind = "Source" if section.endswith("-src") else "x86_64"
        # The one mirror setting, with the exact shape MIRROR/8/8.X/CHANNEL/x86_64/.
        assert repo["baseurl"] == f"https://xcpng.example.invalid/mirror/8/{release}/{channel}/{kind}/"
        assert (repo["gpgcheck"], repo["repo_gpgcheck"], repo["priority"]) == ("1", "1", "1")
        assert repo["gpgkey"] == "file:///etc/pki/rpm-gpg/RPM-GPG-KEY-xcpng"
    assert rendered.file("rpm-gpg/RPM-GPG-KEY-xcpng") == KEY
    centos = _repos(rendered, "centos.repo")
    # The ids of xcp-ng-build-env's CentOS-Vault.repo: --enablerepo/--disablerepo take the same names.
    assert sorted(centos.sections()) == [f"C7.5.1804-{r}" for r in ("base", "extras", "updates")]
    for section in centos.sections():
        repo = centos[section]
        assert repo["exclude"] == "ocaml*" and repo["gpgcheck"] == "1"
        assert repo["baseurl"].startswith("https://vault.example.invalid/centos/7.5.1804/")
    epel = _repos(rendered, "epel.repo")["epel"]
    assert epel["exclude"] == "ocaml*" and epel["baseurl"] == "https://epel.example.invalid/epel/7/x86_64/"
    macros = _macros(rendered.file("macros.dist"))
    assert macros["dist"] == f".xcpng{release}" and macros["el7"] == "1" and macros["rhel"] == "7"
    assert macros.get("xenserver") == xenserver  # xcp-ng-release 8.3 defines it, 8.2's does not
    assert _macros(rendered.file("macros.xcpbuild")) == {"xcpng_release": release}
    script = rendered.file("build-env.sh")
    assert ". /etc/profile.d/opam.sh" in script and "--root=/usr/lib64/opamroot" in script
    assert "ulimit -s 16384" in script


def test_7_5_has_its_own_channels_and_no_signature_check(variables: dict[str, str]) -> None:
    target, rendered = _render("xcp-ng-7.5", {k: v for k, v in variables.items() if k != "XCPBUILD_XCPNG_KEY"})
    assert target.base_image == "centos:7.2.1511" and dict(rendered.build_args)["EPEL_PACKAGES"] == ""
    xcpng = _repos(rendered, "xcp-ng.repo")
    state = {s.removeprefix("xcp-ng-"): xcpng[s]["enabled"] for s in xcpng.sections() if not s.endswith("-src")}
    assert state == {
        "builddeps": "1",
        "base": "1",
        "updates": "1",
        "updates_testing": "0",
        "extras": "0",
        "extras_testing": "0",
    }
    assert all(xcpng[s]["gpgcheck"] == "0" and "repo_gpgcheck" not in xcpng[s] for s in xcpng.sections())
    assert xcpng["xcp-ng-base"]["exclude"] == "xcp-ng-release" and "exclude" not in xcpng["xcp-ng-builddeps"]
    assert xcpng["xcp-ng-builddeps"]["baseurl"] == "https://xcpng.example.invalid/mirror/7/7.5/builddeps/x86_64/"
    assert not any(name.startswith("rpm-gpg/") for name, _ in rendered.files)
    macros = _macros(rendered.file("macros.dist"))
    assert macros["dist"] == ".el7.centos" and "xenserver" not in macros
    assert all(r["exclude"] == "ocaml*" for s, r in _repos(rendered, "centos.repo").items() if s != "DEFAULT")
    assert "--root=/usr/lib/opamroot" in rendered.file("build-env.sh")


def test_9x_is_almalinux_10_with_dnf_builddep(variables: dict[str, str]) -> None:
    target, rendered = _render("xcp-ng-9.0", variables)
    assert target.builddeps == "dnf-builddep" and target.family == "el10" and target.platform == "linux/amd64/v2"
    args = dict(rendered.build_args)
    assert args["BASE"] == "almalinux/10-base:10.0" and args["RELEASEVER"] == "10.0"
    assert "dnf-plugins-core" in args["PACKAGES"].split() and "epel-rpm-macros" in args["EPEL_PACKAGES"].split()
    # xcp-ng-build-env's xcp-ng-8.99.repo: one repository `xcpng`, unsigned, priority 1, metadata_expire=0.
    xcpng = _repos(rendered, "xcp-ng.repo")
    assert xcpng.sections() == ["xcpng"]
    repo = xcpng["xcpng"]
    assert repo["baseurl"] == "https://xcpng.example.invalid/mirror/9/8.99/base/x86_64_v2/"
    assert (repo["enabled"], repo["gpgcheck"], repo["priority"], repo["metadata_expire"]) == ("1", "0", "1", "0")
    # The base image's BaseOS/AppStream, CRB (enabled there with `dnf config-manager --enable crb`), Alma10-devel.
    alma = _repos(rendered, "almalinux.repo")
    assert sorted(alma.sections()) == ["alma10-devel", "appstream", "baseos", "crb"]
    assert alma["crb"]["baseurl"] == "https://vault.example.invalid/almalinux/10.0/CRB/x86_64_v2/os/"
    assert alma["alma10-devel"]["baseurl"] == "https://vault.example.invalid/almalinux/10.0/devel/x86_64_v2/os/"
    assert all(alma[s]["enabled"] == "1" and alma[s]["gpgcheck"] == "1" for s in alma.sections())
    # Binary builds are for the image's architecture, as xcp-ng-build-env's `rpmbuild --target RPMARCH`.
    assert target.rpm_arch == "x86_64_v2"
    macros = _macros(rendered.file("macros.dist"))
    assert (macros["xcpng"], macros["xenserver"], macros["el10"], macros["rhel"]) == ("9", "9", "1", "10")
    assert macros["distcore"] == ".el10" and macros["dist"] == ".el10"
    assert (macros["almalinux"], macros["centos"], macros["__bootstrap"]) == ("10", "10", "~bootstrap")
    assert (macros["dist_vendor"], macros["dist_name"]) == ("Vates SAS", "XCP-ng")
    dockerfile = (target.context_dir / "Dockerfile").read_text()
    assert "dnf builddep" in dockerfile and "/etc/dnf/vars/releasever" in dockerfile


def test_one_dockerfile_per_family() -> None:
    el7 = {find_target(CONTAINERS, n).context_dir for n in ("xcp-ng-7.5", "xcp-ng-8.2", "xcp-ng-8.3")}
    assert el7 == {CONTAINERS / "el7"}
    assert not any((CONTAINERS / n / "Dockerfile").exists() for n in ("xcp-ng-7.5", "xcp-ng-8.2", "xcp-ng-8.3"))
    for family in ("el7", "el10"):
        text = (CONTAINERS / family / "Dockerfile").read_text()
        for name in ("yum.repos.d/", "macros.dist", "build-env.sh", "rpm-gpg/"):
            assert f"rendered/{name}" in text, (family, name)


@pytest.mark.parametrize(
    ("change", "words"),
    [
        ({"XCPBUILD_XCPNG_MIRROR": ""}, "needs $XCPBUILD_XCPNG_MIRROR"),
        ({"XCPBUILD_XCPNG_MIRROR": "ftp://m.example.invalid/x"}, "http(s) URL"),
        ({"XCPBUILD_CENTOS_VAULT": "https://user:secret@v.example.invalid/"}, "credentials"),
        ({"XCPBUILD_XCPNG_KEY": ""}, "needs $XCPBUILD_XCPNG_KEY"),
    ],
)
def test_bad_settings_are_one_line(change: dict[str, str], words: str, variables: dict[str, str]) -> None:
    with pytest.raises(ConfigError) as info:
        _render("xcp-ng-8.3", {**variables, **change})
    assert words in info.value.message and "secret" not in info.value.message


def test_a_key_that_is_not_a_public_key_is_refused(variables: dict[str, str], tmp_path: Path) -> None:
    bad = tmp_path / "bad.asc"
    bad.write_text("-----BEGIN PGP PRIVATE KEY BLOCK-----\n")
    with pytest.raises(ConfigError) as info:
        _render("xcp-ng-8.3", {**variables, "XCPBUILD_XCPNG_KEY": str(bad)})
    assert "not an armored public key" in info.value.message


def test_base_images_setting() -> None:
    assert environment.base_images({"XCPBUILD_BASE_IMAGES": "a:1=b:1, c=d"}) == {"a:1": "b:1", "c": "d"}
    with pytest.raises(ConfigError):
        environment.base_images({"XCPBUILD_BASE_IMAGES": "centos:7.5.1804"})


@pytest.mark.parametrize(("name", "arch"), [("xcp-ng-9.0", "x86_64_v2"), ("xcp-ng-8.3", "x86_64"), ("local", None)])
def test_binary_rpmbuild_targets_the_images_architecture(name: str, arch: str | None) -> None:
    target = find_target(CONTAINERS, name)
    assert target.rpm_arch == arch  # local: rpm's own default
    options = SimpleNamespace(rpmbuild_stage=None, rpmbuild_opts=())
    planned = SimpleNamespace(package=SimpleNamespace(target=target, defines=()), options=options)
    runner = build._Runner(None, None, 0.0, planned)  # type: ignore[arg-type]
    argv, _ = runner.binary_step("/x/demo.src.rpm")
    assert argv[-1] == "/x/demo.src.rpm" and "--rebuild" in argv
    assert (argv[argv.index("--target") + 1] if "--target" in argv else None) == arch


def test_enablerepo_and_disablerepo_must_name_a_repository_of_the_image() -> None:
    nine = find_target(CONTAINERS, "xcp-ng-9.0")
    build.check_repo_names(nine, ["xcpng", "crb", "epel", "alma10-*"], None)
    with pytest.raises(UsageError) as info:
        build.check_repo_names(nine, ["xcp-ng-base"], None)
    assert "has no repository `xcp-ng-base`" in info.value.message and "xcpng" in (info.value.hint or "")
    eight = find_target(CONTAINERS, "xcp-ng-8.3")
    build.check_repo_names(eight, ["xcp-ng-incoming", "xcp-ng-lab-src", "C7.5.1804-extras"], None)
    with pytest.raises(UsageError, match="did you mean xcp-ng-incoming"):
        build.check_repo_names(eight, ["xcp-ng-incomming"], None)
