#!/bin/sh
# Builds Open vSwitch's C library (lib/libopenvswitch.a and the generated vswitch-idl) from
# Debian's openvswitch-source package into DIR, once: DIR/.done marks a finished build, and
# DIR is named after the package version by the Makefile, so a new version builds anew.
# Only what net/ovs links is built: the generated headers and lib/libopenvswitch.la, with
# SSL, libcap-ng and AF_XDP left out.
set -eu
mkdir -p "$1"
dir=$(cd "$1" && pwd)
tarball=$(ls /usr/src/openvswitch/openvswitch.tar.* 2>/dev/null | head -n 1)
[ -n "$tarball" ] || { echo "build-ovs.sh: no /usr/src/openvswitch/openvswitch.tar.*; run deploy/deps.sh" >&2; exit 1; }

exec 9>"$dir/.lock"
flock 9
[ -e "$dir/.done" ] && exit 0
echo "  OVS     building libopenvswitch in $dir (once per openvswitch-source version)"
rm -rf "$dir/src" "$dir/obj"
mkdir -p "$dir/src" "$dir/obj"
tar -xf "$tarball" -C "$dir/src" --strip-components=1
cd "$dir/obj"
../src/configure --disable-ssl --disable-libcapng --disable-afxdp --disable-shared \
    --disable-dependency-tracking --enable-silent-rules --enable-ndebug >configure.log 2>&1 ||
    { tail -n 30 configure.log >&2; exit 1; }
jobs=$(nproc 2>/dev/null || echo 1)
make -s -j"$jobs" include/odp-netlink.h include/odp-netlink-macros.h lib/vswitch-idl.c \
    lib/vswitch-idl.h lib/ovsdb-server-idl.c lib/ovsdb-server-idl.h ofproto/ipfix-entities.def \
    >build.log 2>&1 && make -s -j"$jobs" lib/libopenvswitch.la >>build.log 2>&1 ||
    { tail -n 30 build.log >&2; exit 1; }
touch "$dir/.done"
