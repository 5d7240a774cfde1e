#!/usr/bin/env bash
# One entry point that does all set-up on a fresh machine, then runs a job.
#
#   scripts/dev.sh main [ARGS]   set up, then run the main job (xcpbuild release ARGS) on the local target
#   scripts/dev.sh test [ARGS]   set up, then run the whole test suite (ARGS go to pytest)
#   scripts/dev.sh setup         only set up: Debian packages, .venv, Docker engine
#
# Set-up is idempotent and quick when everything is already there. As root on
# Debian it installs the host tools and starts a Docker engine if none answers;
# elsewhere it checks and explains what is missing.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${XCPBUILD_VENV:-$ROOT/.venv}"
# Host tools the tests and the main job use (rpm brings rpmbuild, rpmsign, rpmspec).
# podman + catatonit (its --init): CI runs the container tests against Podman's Docker API too.
# The koji hub fixture (tests/integration/koji_hub) runs the hub under Debian's python3 with these
# python3-* modules and its own PostgreSQL 15 cluster; libkrb5-dev lets pip build gssapi for PyPI's koji.
DEBIAN_PACKAGES=(docker.io rpm createrepo-c dnf gnupg qemu-utils libvhdi-utils mmdebstrap nginx-light busybox-static git patch podman catatonit chromium
    postgresql python3-psycopg2 python3-rpm python3-defusedxml python3-dateutil python3-requests python3-six libkrb5-dev)
# Installed without their recommends (diffoscope's would pull in hundreds of MiB of format tools);
# python3-rpm and rpm2cpio are the ones it needs to compare RPMs.
LEAN_PACKAGES=(diffoscope-minimal python3-rpm rpm2cpio)

say() { printf '==> %s\n' "$*" >&2; }

install_host_tools() {
    local missing=() lean=()
    for pkg in "${DEBIAN_PACKAGES[@]}"; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
    done
    for pkg in "${LEAN_PACKAGES[@]}"; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || lean+=("$pkg")
    done
    [ ${#missing[@]} -eq 0 ] && [ ${#lean[@]} -eq 0 ] && return 0
    if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null; then
        say "missing host packages: ${missing[*]} ${lean[*]} (install them, then rerun)"
        return 0
    fi
    say "installing Debian packages: ${missing[*]} ${lean[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q >/dev/null
    [ ${#missing[@]} -eq 0 ] || apt-get install -y -q "${missing[@]}" >/dev/null
    [ ${#lean[@]} -eq 0 ] || apt-get install -y -q --no-install-recommends "${lean[@]}" >/dev/null
}

make_venv() {
    local stamp="$VENV/.xcpbuild-installed"
    if [ ! -x "$VENV/bin/python" ]; then
        say "creating $VENV"
        python3 -m venv "$VENV"
    fi
    if [ ! -f "$stamp" ] || [ "$ROOT/pyproject.toml" -nt "$stamp" ]; then
        say "installing xcpbuild and its dev tools into $VENV"
        "$VENV/bin/pip" install -q --disable-pip-version-check -e "$ROOT[dev]"
        touch "$stamp"
    fi
}

setup() {
    install_host_tools
    make_venv
    "$VENV/bin/xcpbuild" engine up
}

cmd="${1:-}"
[ $# -gt 0 ] && shift
case "$cmd" in
    setup) setup ;;
    test)
        setup
        cd "$ROOT"
        # In CI a missing engine, rpmbuild, dnf or qemu-img fails the run instead of skipping.
        if [ -n "${CI:-}" ]; then export XCPBUILD_REQUIRE_TOOLS=1; fi
        exec "$VENV/bin/python" -m pytest "$@"
        ;;
    main)
        setup
        cd "$ROOT"
        "$VENV/bin/xcpbuild" doctor
        exec "$VENV/bin/xcpbuild" release "$@"
        ;;
    *)
        sed -n '2,11p' "$0" | sed 's/^# \{0,1\}//'
        exit 2
        ;;
esac
