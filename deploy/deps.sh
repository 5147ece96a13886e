#!/bin/sh
# Installs the Debian 12 packages nodeagent needs to build, test and run.
# Idempotent, and silent when everything is already there.
set -eu

PKGS="build-essential pkg-config clang
protobuf-c-compiler libprotobuf-c-dev
librdkafka-dev libuv1-dev libsqlite3-dev sqlite3 libinih-dev libjansson-dev
libxml2-dev libmicrohttpd-dev libcurl4-openssl-dev libssl-dev libcmocka-dev
kcat python3 python3-pytest valgrind qemu-utils libvirt-dev libvirt-clients libisofs-dev xorriso
busybox"

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
apt-get update -qq
# shellcheck disable=SC2086
apt-get install -y -qq --no-install-recommends $missing >/dev/null
