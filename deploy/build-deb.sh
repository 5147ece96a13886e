#!/bin/sh
# `make deb`: builds the Debian packages nodeagent and nodeagent-devbus (debian/) with
# dpkg-buildpackage -us -uc -b, and leaves them in build/deb/<key>/, printing their paths.
#
# The build runs in a copy of the tree's files (tracked ones, and untracked ones git does
# not ignore, as they are in the work tree), so that build/ and the tree itself stay
# untouched and the result is what a clean clone would give.  <key> is the sha256 of that
# copy: packages already built from the same files are reused.  Build-Depends missing on
# this machine are installed from Debian first (as root, like deploy/deps.sh).
# OVS_DIR (the Makefile's): a finished build of Open vSwitch's library to reuse, as the
# tree's own build/ovs-<version> is reused when it is finished; otherwise the package
# build compiles it from openvswitch-source.
set -eu
cd "$(dirname "$0")/.."
top=$(pwd)

install_build_deps() {
    missing=$(dpkg-checkbuilddeps 2>&1 | sed -n 's/.*Unmet build dependencies: //p' |
        sed 's/([^)]*)//g; s/<[^>]*>//g; s/ *| *[^ ]*//g')
    [ -z "$missing" ] && return 0
    if [ "$(id -u)" != 0 ]; then
        echo "build-deb.sh: missing build dependencies: $missing (run as root to install them)" >&2
        exit 1
    fi
    echo "build-deb.sh: installing$missing"
    apt-get update -qq
    # shellcheck disable=SC2086
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $missing >/dev/null
}

command -v dpkg-checkbuilddeps >/dev/null || {
    echo "build-deb.sh: dpkg-checkbuilddeps is missing: apt-get install dpkg-dev" >&2
    exit 1
}
install_build_deps

mkdir -p build/deb
src=$(mktemp -d "$top/build/deb/src.XXXXXX")
trap 'rm -rf "$src"' EXIT
trap 'exit 1' INT TERM HUP
git ls-files -z --cached --others --exclude-standard |
    xargs -0 sh -c 'for f; do [ -e "$f" ] && printf "%s\0" "$f"; done; true' sh |
    tar --null -T - -cf - | tar -xf - -C "$src"
key=$(cd "$src" && tar --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner -cf - . |
    sha256sum | cut -c1-16)
out="$top/build/deb/$key"
if ls "$out"/*.deb >/dev/null 2>&1; then
    ls "$out"/*.deb
    exit 0
fi

version=$(dpkg-parsechangelog -S Version)
ovs_version=$(dpkg-query -W -f='${Version}' openvswitch-source)
if [ -z "${OVS_DIR:-}" ] && [ -e "build/ovs-$ovs_version/.done" ]; then
    OVS_DIR="$top/build/ovs-$ovs_version"
fi
[ -n "${OVS_DIR:-}" ] && export OVS_DIR
mkdir -p "$src/nodeagent-$version"
(cd "$src" && find . -mindepth 1 -maxdepth 1 ! -name "nodeagent-$version" \
    -exec mv {} "nodeagent-$version/" \;)
echo "  DEB     building in $src/nodeagent-$version (log: build/deb/$key.log)"
if ! (cd "$src/nodeagent-$version" && dpkg-buildpackage -us -uc -b) >"build/deb/$key.log" 2>&1; then
    tail -n 40 "build/deb/$key.log" >&2
    exit 1
fi
mkdir -p "$out.tmp"
mv "$src"/*.deb "$src"/*.buildinfo "$src"/*.changes "$out.tmp/"
rm -rf "$out"
mv "$out.tmp" "$out"
ls "$out"/*.deb
