#!/bin/sh
# Installs the Debian 12 packages nodeagent needs to build, test and run.
# Idempotent, and silent when everything is already there.
# The virtualization packages (libvirt, QEMU, Open vSwitch) are only used by private,
# per-test daemons (deploy/virtenv.py): their maintainer scripts must not start the
# system-wide services, so a policy-rc.d that denies every start is in place during the
# install (and removed afterwards unless it was already there). libvirt-daemon-system-sysv
# rather than -systemd: it creates the libvirt-qemu user and the default configuration
# without pulling in systemd.  placement-api (OpenStack Placement, for the scheduler client's
# tests, run privately by tests/system/placement.py) installs a service that the same
# policy-rc.d keeps from starting.  openvswitch-source: Debian ships no libopenvswitch-dev, so
# the build compiles Open vSwitch's C library from it (deploy/build-ovs.sh, once per version).
# help2man makes the man pages; debhelper builds the Debian packages (`make deb`, which
# installs the rest of debian/control's Build-Depends itself), and debootstrap and lintian
# serve their test (tests/system/test_debian_package.py).
set -eu

PKGS="build-essential pkg-config clang clang-format
protobuf-c-compiler libprotobuf-c-dev
librdkafka-dev libuv1-dev libsqlite3-dev sqlite3 libinih-dev libjansson-dev
libxml2-dev libmicrohttpd-dev libcurl4-openssl-dev libssl-dev libcmocka-dev
kcat python3 python3-pytest valgrind qemu-utils libvirt-dev libisofs-dev busybox
libvirt-daemon libvirt-daemon-driver-qemu libvirt-daemon-system libvirt-daemon-system-sysv
libvirt-clients python3-libvirt qemu-system-x86 openvswitch-switch xorriso
fdisk dosfstools mtools syslinux syslinux-common cpio iproute2 iputils-ping virtinst
placement-api python3-os-traits openvswitch-source python3-cryptography
help2man debhelper debootstrap lintian python3-prometheus-client prometheus-libvirt-exporter"

missing=""
for p in $PKGS; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed'; then
        missing="$missing $p"
    fi
done
[ -z "$missing" ] && exit 0

if [ "$(id -u)" != 0 ]; then
    echo "deps.sh: missing packages:$missing (run as root to install them)" >&2
    exit 1
fi
echo "deps.sh: installing$missing"
export DEBIAN_FRONTEND=noninteractive
policy=/usr/sbin/policy-rc.d
if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\n# deploy/deps.sh: no service starts during the install\nexit 101\n' >"$policy"
    chmod 0755 "$policy"
    trap 'rm -f "$policy"' EXIT
    trap 'exit 1' INT TERM HUP
fi
apt-get update -qq
# shellcheck disable=SC2086
apt-get install -y -qq --no-install-recommends $missing >/dev/null
