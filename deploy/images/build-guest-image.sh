#!/bin/sh
# build-guest-image.sh OUTDIR [--cache DIR]
#
# Builds OUTDIR/nodeagent-guest.qcow2: a small (tens of MiB) bootable guest disk
# image for nodeagent's system tests and `make run`, made from Debian packages
# alone, without root privileges, loop devices or mounts.
#
# How it works
#   1. `apt-get download` fetches into the cache dir (default OUTDIR/.cache, or
#      --cache DIR, or $NODEAGENT_IMAGE_CACHE):
#        linux-image-cloud-amd64 -> the versioned linux-image-X-cloud-amd64 it depends on
#        busybox-static
#      A .deb already in the cache whose SHA256 matches the apt index is reused,
#      so re-running is cheap and needs no download. The packages are unpacked
#      with `dpkg-deb -x` into the cache; nothing is installed on the host.
#   2. Busybox's own `depmod -b` writes modules.dep for the unpacked kernel (the
#      .deb ships none; Debian's postinst normally makes it). The modules the
#      guest needs are resolved with their dependencies from it and ordered
#      so that every module follows its dependencies:
#        virtio_pci virtio_net virtio_blk virtio_scsi virtio_rng  (virtio is =m)
#        ata_piix sr_mod sd_mod isofs  (config drive: libvirt puts a cdrom on the
#                                       IDE bus of the default i440fx `pc` machine;
#                                       this kernel has no AHCI, so q35's SATA
#                                       cdrom is not supported)
#        vfat nls_cp437 nls_ascii nls_utf8  (a vfat config drive, as OpenStack's
#                                       config_drive_format=vfat makes)
#        button evdev                 (ACPI power button -> busybox acpid)
#   3. An initramfs (newc cpio, gzip) holds busybox-static as /bin/busybox with
#      applet symlinks, those modules, a JSON flattener written in awk, and the
#      /init script. /init mounts proc/sys/devtmpfs, loads the modules, starts
#      acpid (power button -> `poweroff -f`), looks for the config drive (an
#      ISO9660 or other filesystem labelled config-2, OpenStack layout) on
#      /dev/sr*, /dev/vd*, /dev/sd*, /dev/hd*, reads openstack/latest/meta_data.json
#      and network_data.json, sets the hostname, configures every link matched
#      by MAC (static IPv4 and IPv6, netmask, MTU, routes), writes DNS servers and SSH
#      keys, and prints on the console (serial ttyS0):
#          nodeagent-guest: ready <hostname> <first-ip|none>
#      then runs a shell on the console forever (the kernel answers ping).
#      Without a config drive it prints a warning line and
#          nodeagent-guest: ready nodeagent-guest none
#      Kernel command line knobs: nodeagent.cfgwait=SECONDS (default 10: how
#      long to wait for the config drive to appear), nodeagent.debug=1.
#   4. The disk: a raw file with an MBR partition table (sfdisk), one active
#      FAT16 partition at 1 MiB (mkfs.vfat on a separate file, filled with
#      mtools' mcopy: vmlinuz, initrd.img, syslinux.cfg), SYSLINUX installed
#      into that FAT file by syslinux's mtools variant, the FAT file dd'd in at
#      its offset, syslinux-common's mbr.bin dd'd to sector 0, and
#      `qemu-img convert -O qcow2`. The guest boots from its own disk via BIOS.
#
# Host packages needed (deploy/deps.sh installs them):
#   apt dpkg coreutils gzip cpio fdisk dosfstools mtools syslinux syslinux-common qemu-utils
# To boot-test the result (not needed to build): qemu-system-x86 xorriso.
#
# Always test guests with TCG (`qemu-system-x86_64 -accel tcg`, libvirt
# virt_type=qemu): nested KVM hangs Linux guests on the project's test hosts.
# See deploy/images/README.md for a boot test recipe.
set -eu

# ---------------------------------------------------------------- settings --
KERNEL_META_PKG=${KERNEL_META_PKG:-linux-image-cloud-amd64}
BUSYBOX_PKG=${BUSYBOX_PKG:-busybox-static}
IMAGE_NAME=nodeagent-guest.qcow2
DEFAULT_HOSTNAME=nodeagent-guest
PART_START=2048 # sectors (1 MiB)
KERNEL_CMDLINE="console=tty0 console=ttyS0,115200n8 quiet"
# Module names as given to modprobe; their dependencies are added from modules.dep.
GUEST_MODULES="virtio_pci virtio_net virtio_blk virtio_scsi virtio_rng
ata_piix sr_mod sd_mod isofs vfat nls_cp437 nls_ascii nls_utf8 button evdev"
HOST_TOOLS="apt-get:apt apt-cache:apt dpkg-deb:dpkg sha256sum:coreutils dd:coreutils
truncate:coreutils stat:coreutils gzip:gzip cpio:cpio sfdisk:fdisk mkfs.vfat:dosfstools
mcopy:mtools mdir:mtools syslinux:syslinux qemu-img:qemu-utils awk:mawk find:findutils"
MBR_BIN_CANDIDATES="/usr/lib/syslinux/mbr/mbr.bin /usr/lib/SYSLINUX/mbr.bin /usr/share/syslinux/mbr.bin"

PROG=build-guest-image.sh
# Timestamps inside the image (initramfs, FAT) come from here.
SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-1700000000}
export SOURCE_DATE_EPOCH
die() { echo "$PROG: error: $*" >&2; exit 1; }
info() { echo "$PROG: $*" >&2; }

usage() {
    echo "usage: $PROG OUTDIR [--cache DIR]" >&2
    echo "  builds OUTDIR/$IMAGE_NAME; downloads are cached in DIR" >&2
    echo "  (default \$NODEAGENT_IMAGE_CACHE or OUTDIR/.cache)" >&2
    exit 2
}

# ------------------------------------------------------------------- args --
OUTDIR=""
CACHE=${NODEAGENT_IMAGE_CACHE:-}
while [ $# -gt 0 ]; do
    case "$1" in
    --cache) [ $# -ge 2 ] || usage; CACHE=$2; shift 2 ;;
    --cache=*) CACHE=${1#--cache=}; shift ;;
    -h|--help) usage ;;
    -*) echo "$PROG: unknown option $1" >&2; usage ;;
    *) [ -z "$OUTDIR" ] || usage; OUTDIR=$1; shift ;;
    esac
done
[ -n "$OUTDIR" ] || usage
[ "$(uname -m)" = x86_64 ] || die "this builds an amd64 guest image; run it on x86_64"

# ------------------------------------------------------------- host tools --
missing=""
for t in $HOST_TOOLS; do
    command -v "${t%%:*}" >/dev/null 2>&1 || missing="$missing ${t#*:}(${t%%:*})"
done
MBR_BIN=""
for f in $MBR_BIN_CANDIDATES; do [ -f "$f" ] && { MBR_BIN=$f; break; }; done
[ -n "$MBR_BIN" ] || missing="$missing syslinux-common(mbr.bin)"
[ -z "$missing" ] || die "missing host tools, install these Debian packages:$missing
  (deploy/deps.sh installs them: apt-get install fdisk dosfstools mtools syslinux syslinux-common cpio qemu-utils)"

mkdir -p "$OUTDIR" || die "cannot create $OUTDIR"
OUTDIR=$(cd "$OUTDIR" && pwd)
[ -n "$CACHE" ] || CACHE=$OUTDIR/.cache
mkdir -p "$CACHE/debs" "$CACHE/unpacked" || die "cannot create cache dir $CACHE"
CACHE=$(cd "$CACHE" && pwd)

WORK=$(mktemp -d "$OUTDIR/.build.XXXXXX") || die "cannot create a work dir in $OUTDIR"
trap 'rm -rf "$WORK"' EXIT
trap 'exit 130' INT TERM

# ------------------------------------------------------------ debs, cache --
# pkg_field PKG FIELD: FIELD of the candidate version in the apt index.
pkg_field() {
    apt-cache show --no-all-versions "$1" 2>/dev/null |
        awk -v f="$2" 'index($0, f ": ") == 1 { print substr($0, length(f) + 3); exit }'
}

# fetch_deb PKG: prints the path of PKG's candidate .deb in the cache,
# downloading it unless a copy with the right SHA256 is there already.
fetch_deb() {
    pkg=$1
    ver=$(pkg_field "$pkg" Version)
    [ -n "$ver" ] || die "package $pkg is not in the apt index (run apt-get update; is the Debian archive reachable?)"
    sha=$(pkg_field "$pkg" SHA256)
    arch=$(pkg_field "$pkg" Architecture)
    deb="$CACHE/debs/${pkg}_$(echo "$ver" | sed 's/:/%3a/')_${arch}.deb"
    if [ -f "$deb" ] && { [ -z "$sha" ] || [ "$(sha256sum "$deb" | cut -d' ' -f1)" = "$sha" ]; }; then
        info "cached: $(basename "$deb")"
    else
        rm -f "$deb"
        info "downloading $pkg=$ver"
        sandbox=""
        [ "$(id -u)" = 0 ] && sandbox="-o APT::Sandbox::User=root"
        # shellcheck disable=SC2086
        (cd "$CACHE/debs" && apt-get download -q $sandbox "$pkg=$ver" >&2) ||
            die "apt-get download $pkg=$ver failed"
        [ -f "$deb" ] || die "apt-get download $pkg=$ver did not produce $deb"
        if [ -n "$sha" ] && [ "$(sha256sum "$deb" | cut -d' ' -f1)" != "$sha" ]; then
            rm -f "$deb"
            die "SHA256 mismatch for $pkg=$ver"
        fi
    fi
    echo "$deb"
}

# unpack_deb DEB: prints the directory DEB is unpacked in (unpacked once).
unpack_deb() {
    dir="$CACHE/unpacked/$(basename "$1" .deb)"
    if [ ! -f "$dir/.unpacked" ]; then
        rm -rf "$dir"
        mkdir -p "$dir"
        dpkg-deb -x "$1" "$dir" || die "dpkg-deb -x $1 failed"
        : >"$dir/.unpacked"
    fi
    echo "$dir"
}

KERNEL_PKG=$(apt-cache depends "$KERNEL_META_PKG" 2>/dev/null |
    awk '$1 == "Depends:" && $2 ~ /^linux-image-/ { print $2; exit }')
[ -n "$KERNEL_PKG" ] || die "cannot resolve the kernel package $KERNEL_META_PKG depends on (run apt-get update)"
info "kernel package: $KERNEL_PKG (via $KERNEL_META_PKG)"

# (One step per assignment, so that set -e sees a failing fetch_deb.)
KDEB=$(fetch_deb "$KERNEL_PKG")
BBDEB=$(fetch_deb "$BUSYBOX_PKG")
KDIR=$(unpack_deb "$KDEB")
BBDIR=$(unpack_deb "$BBDEB")
BUSYBOX=$BBDIR/bin/busybox
[ -x "$BUSYBOX" ] || die "$BUSYBOX_PKG has no bin/busybox"

# The kernel package lays out /boot and /lib/modules (or /usr/lib/modules).
MODROOT=$KDIR/lib/modules
[ -d "$MODROOT" ] || MODROOT=$KDIR/usr/lib/modules
[ -d "$MODROOT" ] || die "$KERNEL_PKG has no lib/modules"
KVER=$(ls "$MODROOT")
[ "$(echo "$KVER" | wc -l)" = 1 ] || die "expected one kernel version in $MODROOT, found: $KVER"
VMLINUZ=$KDIR/boot/vmlinuz-$KVER
[ -f "$VMLINUZ" ] || die "$KERNEL_PKG has no boot/vmlinuz-$KVER"
info "kernel version: $KVER"

# The package ships no modules.dep; busybox depmod makes one (in the cache).
if [ ! -s "$MODROOT/$KVER/modules.dep" ]; then
    info "generating modules.dep with busybox depmod"
    "$BUSYBOX" depmod -b "${MODROOT%/lib/modules}" "$KVER" || die "busybox depmod failed"
    [ -s "$MODROOT/$KVER/modules.dep" ] || die "busybox depmod wrote no modules.dep"
fi

# ------------------------------------------------------- module selection --
# Resolve GUEST_MODULES and their dependencies into load order (dependencies
# first). A module that is built in (modules.builtin) is skipped; one that is
# neither a module nor built in is an error.
# shellcheck disable=SC2086,SC2116
LOAD_ORDER=$(awk -v want="$(echo $GUEST_MODULES)" -v builtin="$MODROOT/$KVER/modules.builtin" '
    function norm(p,   n) { n = p; sub(/.*\//, "", n); sub(/\.ko(\.[a-z]+)?$/, "", n); gsub(/-/, "_", n); return n }
    function visit(path,   i, k, d) {
        if (path in done) return
        if (path in onstack) { print "dependency cycle at " path > "/dev/stderr"; bad = 1; return }
        onstack[path] = 1
        k = split(deps[path], d, " ")
        # modules.dep lists the deepest dependency last; visit all before path.
        for (i = k; i >= 1; i--) visit(d[i])
        delete onstack[path]
        done[path] = 1
        order[++n] = path
    }
    {
        p = $1; sub(/:$/, "", p)
        deps[p] = ""
        for (i = 2; i <= NF; i++) deps[p] = deps[p] " " $i
        byname[norm(p)] = p
    }
    END {
        while ((getline line < builtin) > 0) isbuiltin[norm(line)] = 1
        k = split(want, w, " ")
        for (i = 1; i <= k; i++) {
            m = w[i]; gsub(/-/, "_", m)
            if (m in byname) visit(byname[m])
            else if (m in isbuiltin) print "note: " m " is built in" > "/dev/stderr"
            else { print "module " m " is neither a module nor built in" > "/dev/stderr"; bad = 1 }
        }
        if (bad) exit 1
        for (i = 1; i <= n; i++) print order[i]
    }' "$MODROOT/$KVER/modules.dep") || die "cannot resolve guest kernel modules"
info "modules: $(for m in $LOAD_ORDER; do basename "$m" .ko; done | tr '\n' ' ')"

# ------------------------------------------------------------- initramfs --
R=$WORK/initramfs
mkdir -p "$R"
for d in bin sbin usr/bin usr/sbin dev proc sys run tmp var/log mnt/config root/.ssh etc/acpi/PWRF \
    lib/nodeagent "lib/modules/$KVER"; do
    mkdir -p "$R/$d"
done
ln -s ../run "$R/var/run"
chmod 1777 "$R/tmp"
chmod 700 "$R/root" "$R/root/.ssh"
cp "$BUSYBOX" "$R/bin/busybox"
"$BUSYBOX" --list-full | while read -r a; do
    case "$a" in bin/busybox | linuxrc) continue ;; esac
    case "$a" in
    bin/*) ln -sf busybox "$R/$a" ;;
    sbin/*) ln -sf ../bin/busybox "$R/$a" ;;
    usr/bin/* | usr/sbin/*) ln -sf ../../bin/busybox "$R/$a" ;;
    *) die "unexpected busybox applet path $a" ;;
    esac
done
for m in $LOAD_ORDER; do
    mkdir -p "$R/lib/modules/$KVER/$(dirname "$m")"
    cp "$MODROOT/$KVER/$m" "$R/lib/modules/$KVER/$m"
    echo "$m" >>"$R/lib/modules/$KVER/nodeagent.load"
done
cp "$MODROOT/$KVER/modules.builtin" "$MODROOT/$KVER/modules.order" "$R/lib/modules/$KVER/"
"$BUSYBOX" depmod -b "$R" "$KVER" || die "busybox depmod on the initramfs failed"

echo "$DEFAULT_HOSTNAME" >"$R/etc/hostname"
printf '127.0.0.1 localhost\n' >"$R/etc/hosts"
printf 'root:x:0:0:root:/root:/bin/sh\n' >"$R/etc/passwd"
printf 'root:x:0:\n' >"$R/etc/group"

# busybox acpid maps the power button's KEY_POWER to "PWRF/00000080" and runs
# /etc/acpi/PWRF/00000080.
cat >"$R/etc/acpi/PWRF/00000080" <<'EOF'
#!/bin/sh
echo "nodeagent-guest: ACPI power button: powering off" >/dev/console
sync
poweroff -f
EOF
chmod 755 "$R/etc/acpi/PWRF/00000080"

# jsonflat.awk: flattens JSON (one line or pretty-printed) into path=value
# lines, e.g. links.0.ethernet_mac_address=52:54:00:12:34:56. Strings are
# unescaped (\uXXXX outside ASCII becomes '?'); newlines become "\n".
cat >"$R/lib/nodeagent/jsonflat.awk" <<'EOF'
function fail(m) { printf "jsonflat: %s at offset %d\n", m, pos > "/dev/stderr"; bad = 1; exit 1 }
function skipws() { while (pos <= n && index(" \t\r\n", substr(s, pos, 1)) > 0) pos++ }
function emit(path, v) { gsub(/\n/, "\\n", v); print path "=" v }
function join(path, k) { return path == "" ? k : path "." k }
function pstring(   out, c, h) {
    out = ""
    pos++ # opening quote
    while (pos <= n) {
        if (match(substr(s, pos), /^[^"\\]+/)) { out = out substr(s, pos, RLENGTH); pos += RLENGTH; continue }
        c = substr(s, pos, 1)
        if (c == "\"") { pos++; return out }
        c = substr(s, pos + 1, 1); pos += 2
        if (c == "n") out = out "\n"
        else if (c == "t") out = out "\t"
        else if (c == "r") out = out "\r"
        else if (c == "b" || c == "f") out = out " "
        else if (c == "u") {
            h = tolower(substr(s, pos, 4)); pos += 4
            if (h ~ /^00[2-7][0-9a-f]$/) out = out sprintf("%c", hex(h)); else out = out "?"
        } else out = out c
    }
    fail("unterminated string")
}
function hex(h,   i, v) { v = 0; for (i = 1; i <= length(h); i++) v = v * 16 + index("0123456789abcdef", substr(h, i, 1)) - 1; return v }
function pvalue(path,   c, k, i) {
    skipws()
    c = substr(s, pos, 1)
    if (c == "{") {
        pos++; skipws()
        if (substr(s, pos, 1) == "}") { pos++; return }
        while (1) {
            skipws()
            if (substr(s, pos, 1) != "\"") fail("expected a key")
            k = pstring(); skipws()
            if (substr(s, pos, 1) != ":") fail("expected ':'")
            pos++
            pvalue(join(path, k)); skipws()
            c = substr(s, pos, 1); pos++
            if (c == "}") return
            if (c != ",") fail("expected ',' or '}'")
        }
    } else if (c == "[") {
        pos++; skipws()
        if (substr(s, pos, 1) == "]") { pos++; return }
        for (i = 0; ; i++) {
            pvalue(join(path, i)); skipws()
            c = substr(s, pos, 1); pos++
            if (c == "]") return
            if (c != ",") fail("expected ',' or ']'")
        }
    } else if (c == "\"") {
        emit(path, pstring())
    } else if (match(substr(s, pos), /^[-+0-9.eEa-z]+/)) {
        emit(path, substr(s, pos, RLENGTH)); pos += RLENGTH
    } else fail("unexpected character '" c "'")
}
{ s = s $0 "\n" }
END {
    if (bad) exit 1
    n = length(s); pos = 1
    pvalue("")
    skipws()
    if (pos <= n) fail("trailing data")
}
EOF

cat >"$R/init" <<EOF
#!/bin/sh
# nodeagent guest /init, generated by deploy/images/build-guest-image.sh.
DEFAULT_HOSTNAME=$DEFAULT_HOSTNAME
EOF
cat >>"$R/init" <<'EOF'
PATH=/bin:/sbin:/usr/bin:/usr/sbin
export PATH
umask 022
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null
mkdir -p /dev/pts
mount -t devpts devpts /dev/pts
exec </dev/console >/dev/console 2>&1

say() { echo "nodeagent-guest: $*"; }
warn() { echo "nodeagent-guest: warning: $*"; }
dbg() { [ "$DEBUG" = 1 ] && echo "nodeagent-guest: debug: $*"; }

CFGWAIT=10
DEBUG=0
# shellcheck disable=SC2013
for arg in $(cat /proc/cmdline); do
    case "$arg" in
    nodeagent.cfgwait=*) CFGWAIT=${arg#*=} ;;
    nodeagent.debug=*) DEBUG=${arg#*=} ;;
    esac
done

hostname "$DEFAULT_HOSTNAME"
ip link set lo up

# Kernel modules, dependencies first (order computed at image build time).
KVER=$(uname -r)
while read -r m; do
    out=$(insmod "/lib/modules/$KVER/$m" 2>&1) || case "$out" in
        *"File exists"*) ;;
        *) warn "insmod $m: $out" ;;
        esac
done <"/lib/modules/$KVER/nodeagent.load"

# ACPI power button -> /etc/acpi/PWRF/00000080 -> poweroff -f.
i=0
while ! grep -qs "Power Button" /sys/class/input/*/name && [ $i -lt 20 ]; do
    usleep 50000; i=$((i + 1))
done
# (busybox acpid dies quietly when its log or pid file cannot be created.)
acpid -c /etc/acpi -l /run/acpid.log -p /run/acpid.pid

# --- config drive ----------------------------------------------------------
iso_label() { dd if="$1" bs=2048 skip=16 count=1 2>/dev/null | dd bs=1 skip=40 count=32 2>/dev/null | tr -d ' \0'; }
find_config_drive() {
    for d in /dev/sr* /dev/vd* /dev/sd* /dev/hd*; do
        [ -b "$d" ] || continue
        case "$(iso_label "$d")" in
        config-2 | CONFIG-2) echo "$d"; return 0 ;;
        esac
    done
    d=$(findfs LABEL=config-2 2>/dev/null || findfs LABEL=CONFIG-2 2>/dev/null) && [ -b "$d" ] &&
        { echo "$d"; return 0; }
    return 1
}
uptime_s() { cut -d. -f1 /proc/uptime; }
CFG=""
deadline=$(($(uptime_s) + CFGWAIT))
while :; do
    if dev=$(find_config_drive); then
        if mount -t iso9660 -o ro "$dev" /mnt/config 2>/dev/null || mount -o ro "$dev" /mnt/config 2>/dev/null; then
            CFG=/mnt/config/openstack/latest
            dbg "config drive $dev at $(cut -d' ' -f1 /proc/uptime) s"
            break
        fi
    fi
    [ "$(uptime_s)" -lt "$deadline" ] || break
    usleep 200000
done

flat() { awk -f /lib/nodeagent/jsonflat.awk "$1" >"$2" || { warn "cannot parse $1"; : >"$2"; }; }
# get FILE KEY: value of KEY in a flattened JSON file, empty if absent.
get() { awk -v k="$2" 'index($0, k "=") == 1 { print substr($0, length(k) + 2); exit }' "$1"; }
has() { grep -q "^$2[.=]" "$1"; }

# mask6_len MASK: the prefix length of an IPv6 netmask ("ffff:ffff:ffff:ffff::" -> 64).
mask6_len() {
    echo "$1" | awk -F: '{
        split("0 1 1 2 1 2 2 3 1 2 2 3 2 3 3 4", bits, " ")
        n = 0
        for (i = 1; i <= NF; i++)
            for (j = 1; j <= length($i); j++)
                n += bits[index("0123456789abcdef", tolower(substr($i, j, 1)))]
        print n }'
}
# ipv6_flagged BIT: the IPv6 addresses (hex, with their interface) whose flags have BIT
# (64: tentative, 8: DAD failed), from /proc/net/if_inet6.
ipv6_flagged() {
    awk -v bit="$1" '{ f = 0; for (j = 1; j <= length($5); j++) f = f * 16 + index("0123456789abcdef", substr($5, j, 1)) - 1
        if (int(f / bit) % 2) printf "%s%%%s ", $1, $6 }' /proc/net/if_inet6 2>/dev/null
}
# ipv6_network KEY IFACE: a static network of type ipv6 (address, netmask, routes; a
# ::/:: route is the default route) on IFACE.  Router Advertisements are not listened to:
# addresses and routes come from the config drive alone.
ipv6_network() {
    n=$1 ifc=$2
    for k in accept_ra autoconf; do echo 0 >"/proc/sys/net/ipv6/conf/$ifc/$k" 2>/dev/null; done
    ipa=$(get $N "$n.ip_address")
    mask=$(get $N "$n.netmask")
    [ -n "$ipa" ] || { warn "network $n has no ip_address"; return; }
    case "$ipa" in
    */*) ;;
    *) ipa="$ipa/$(mask6_len "${mask:-ffff:ffff:ffff:ffff::}")" ;;
    esac
    ip -6 addr add "$ipa" dev "$ifc" || { warn "cannot set $ipa on $ifc"; return; }
    echo "$ifc" >>/run/ipv6-ifaces
    [ "$FIRST_IP" = none ] && FIRST_IP=${ipa%/*}
    dbg "$ifc: $ipa"
    r=0
    while has $N "$n.routes.$r"; do
        net=$(get $N "$n.routes.$r.network")
        rmask=$(get $N "$n.routes.$r.netmask")
        gw=$(get $N "$n.routes.$r.gateway")
        r=$((r + 1))
        [ -n "$gw" ] || continue
        case "$net/$rmask" in
        ::/:: | ::/ | ::/0 | /*) ip -6 route replace default via "$gw" dev "$ifc" ;;
        */*:*) ip -6 route replace "$net/$(mask6_len "$rmask")" via "$gw" dev "$ifc" ;;
        *) ip -6 route replace "$net/$rmask" via "$gw" dev "$ifc" ;;
        esac || warn "cannot add route $net/$rmask via $gw on $ifc"
    done
}

HOST=$DEFAULT_HOSTNAME
FIRST_IP=none
if [ -z "$CFG" ]; then
    warn "no config drive (label config-2) found after ${CFGWAIT}s: keeping defaults"
else
    M=/run/meta_data.flat N=/run/network_data.flat
    if [ -f "$CFG/meta_data.json" ]; then flat "$CFG/meta_data.json" $M; else warn "no meta_data.json"; : >$M; fi
    if [ -f "$CFG/network_data.json" ]; then flat "$CFG/network_data.json" $N; else warn "no network_data.json"; : >$N; fi
    h=$(get $M hostname); [ -n "$h" ] || h=$(get $M name)
    h=$(echo "$h" | tr -c 'A-Za-z0-9.\n-' '-' | cut -c1-63)
    [ -n "$h" ] && HOST=$h
    UUID=$(get $M uuid)
    dbg "uuid=$UUID name=$(get $M name)"
    # SSH keys: public_keys.<name>=KEY and keys.<n>.data=KEY.
    { sed -n 's/^public_keys\.[^=]*=//p' $M; sed -n 's/^keys\.[0-9]*\.data=//p' $M; } |
        sort -u >/root/.ssh/authorized_keys
    chmod 600 /root/.ssh/authorized_keys

    # links: id -> interface (matched by MAC), MTU.
    : >/run/links
    i=0
    while has $N "links.$i"; do
        id=$(get $N "links.$i.id")
        mac=$(get $N "links.$i.ethernet_mac_address" | tr 'A-F' 'a-f')
        mtu=$(get $N "links.$i.mtu")
        i=$((i + 1))
        [ -n "$mac" ] || { warn "link $id has no ethernet_mac_address"; continue; }
        # virtio_net probes during insmod, so NICs are there already; wait
        # a little, once, for anything slower.
        ifc=""
        t=0
        while [ -z "$ifc" ] && [ $t -lt 20 ]; do
            for a in /sys/class/net/*/address; do
                [ "$(cat "$a")" = "$mac" ] && { ifc=${a%/address}; ifc=${ifc##*/}; break; }
            done
            [ -n "$ifc" ] || [ "$MACWAITED" = 1 ] || usleep 100000
            t=$((t + 1))
        done
        [ -n "$ifc" ] || MACWAITED=1
        [ -n "$ifc" ] || { warn "no interface with MAC $mac (link $id)"; continue; }
        case "$mtu" in '' | null) ;; *) ip link set dev "$ifc" mtu "$mtu" || warn "cannot set MTU $mtu on $ifc" ;; esac
        ip link set dev "$ifc" up
        echo "$id $ifc" >>/run/links
        dbg "link $id = $ifc mac $mac mtu $mtu"
    done

    # networks: static IPv4 or IPv6 on the link's interface, then its routes.
    : >/run/ipv6-ifaces
    i=0
    while has $N "networks.$i"; do
        n="networks.$i"
        i=$((i + 1))
        link=$(get $N "$n.link")
        type=$(get $N "$n.type")
        ifc=$(awk -v l="$link" '$1 == l { print $2; exit }' /run/links)
        [ -n "$ifc" ] || { warn "network $n: link '$link' has no interface"; continue; }
        case "$type" in
        ipv4) ;;
        ipv6) ipv6_network "$n" "$ifc"; continue ;;
        *) warn "network $n: type '$type' not supported, skipped"; continue ;;
        esac
        ipa=$(get $N "$n.ip_address")
        mask=$(get $N "$n.netmask")
        [ -n "$ipa" ] || { warn "network $n has no ip_address"; continue; }
        case "$ipa" in
        */*) ip addr add "$ipa" dev "$ifc" ;;
        *) ifconfig "$ifc" "$ipa" netmask "${mask:-255.255.255.0}" up ;;
        esac || { warn "cannot set $ipa on $ifc"; continue; }
        [ "$FIRST_IP" = none ] && FIRST_IP=${ipa%/*}
        dbg "$ifc: $ipa netmask $mask"
        r=0
        while has $N "$n.routes.$r"; do
            net=$(get $N "$n.routes.$r.network")
            rmask=$(get $N "$n.routes.$r.netmask")
            gw=$(get $N "$n.routes.$r.gateway")
            r=$((r + 1))
            [ -n "$gw" ] || continue
            case "$net/$rmask" in
            0.0.0.0/0.0.0.0 | /* | 0.0.0.0/ | 0.0.0.0/0) ip route replace default via "$gw" dev "$ifc" ;;
            *) route add -net "$net" netmask "$rmask" gw "$gw" dev "$ifc" ;;
            esac || warn "cannot add route $net/$rmask via $gw on $ifc"
        done
    done

    # IPv6 addresses are tentative until duplicate address detection (about a
    # second) passes: wait for it, bounded, so that "ready" means usable.
    t=0
    while [ -s /run/ipv6-ifaces ] && [ -n "$(ipv6_flagged 64)" ] && [ $t -lt 50 ]; do
        usleep 100000; t=$((t + 1))
    done
    [ -n "$(ipv6_flagged 64)" ] && warn "IPv6 addresses still tentative: $(ipv6_flagged 64)"
    [ -n "$(ipv6_flagged 8)" ] && warn "IPv6 duplicate address detection failed: $(ipv6_flagged 8)"

    # DNS servers.
    : >/etc/resolv.conf
    i=0
    while has $N "services.$i"; do
        [ "$(get $N "services.$i.type")" = dns ] && echo "nameserver $(get $N "services.$i.address")" >>/etc/resolv.conf
        i=$((i + 1))
    done
fi

hostname "$HOST"
echo "$HOST" >/etc/hostname
echo "127.0.1.1 $HOST" >>/etc/hosts
pidof acpid >/dev/null || warn "acpid is not running: ACPI shutdown will not power the guest off"
say "ready $HOST $FIRST_IP"
[ -c /dev/tty0 ] && echo "nodeagent-guest: ready $HOST $FIRST_IP" >/dev/tty0 2>/dev/null

# PID 1 stays here: a shell on the console, restarted when it exits (the
# shell also reaps orphans).
while :; do
    setsid cttyhack sh -l
    sleep 1
done
EOF
chmod 755 "$R/init"

# Fixed timestamps, so that equal inputs give an equal image where the tools allow it.
find "$R" -exec touch -h -d "@$SOURCE_DATE_EPOCH" {} +
INITRD=$WORK/initrd.img
(cd "$R" && find . | LC_ALL=C sort | cpio -o -H newc -R 0:0 --reproducible --quiet) | gzip -9n >"$INITRD" ||
    die "cannot build the initramfs"
info "initramfs: $(stat -c %s "$INITRD") bytes"

# -------------------------------------------------------------- the disk --
KSIZE=$(stat -c %s "$VMLINUZ")
ISIZE=$(stat -c %s "$INITRD")
# FAT16 partition: kernel + initrd + syslinux (~150 KiB) + 25% + 4 MiB slack, whole MiB.
FAT_MIB=$(((KSIZE + ISIZE) * 5 / 4 / 1048576 + 5))
[ "$FAT_MIB" -ge 16 ] || FAT_MIB=16
FAT=$WORK/boot.fat
truncate -s "${FAT_MIB}M" "$FAT"
mkfs.vfat --invariant -F 16 -n NAGUEST -i 4e414753 -h "$PART_START" "$FAT" >/dev/null || die "mkfs.vfat failed"

cat >"$WORK/syslinux.cfg" <<EOF
DEFAULT nodeagent
PROMPT 0
TIMEOUT 0
LABEL nodeagent
  LINUX /vmlinuz
  INITRD /initrd.img
  APPEND $KERNEL_CMDLINE
EOF
cp "$VMLINUZ" "$WORK/vmlinuz"
touch -d "@$SOURCE_DATE_EPOCH" "$WORK/vmlinuz" "$INITRD" "$WORK/syslinux.cfg"
export MTOOLS_SKIP_CHECK=1 MTOOLS_NO_VFAT=1
mcopy -m -i "$FAT" "$WORK/vmlinuz" "$INITRD" "$WORK/syslinux.cfg" ::/ || die "mcopy into the FAT image failed"
syslinux --install "$FAT" || die "syslinux --install failed"
mdir -i "$FAT" -a -b ::/ 2>/dev/null | grep -qi ldlinux.sys || die "syslinux did not install ldlinux.sys"

DISK_MIB=$((FAT_MIB + 1))
RAW=$WORK/disk.raw
truncate -s "${DISK_MIB}M" "$RAW"
echo "label: dos
label-id: 0x4e414753
start=$PART_START, size=$((FAT_MIB * 2048)), type=e, bootable" |
    sfdisk --quiet --no-reread --no-tell-kernel "$RAW" || die "sfdisk failed"
dd if="$MBR_BIN" of="$RAW" bs=440 count=1 conv=notrunc status=none || die "cannot write $MBR_BIN"
dd if="$FAT" of="$RAW" bs=512 seek="$PART_START" conv=notrunc status=none || die "cannot write the FAT partition"

qemu-img convert -f raw -O qcow2 "$RAW" "$WORK/$IMAGE_NAME" || die "qemu-img convert failed"
mv -f "$WORK/$IMAGE_NAME" "$OUTDIR/$IMAGE_NAME"
SUM=$(sha256sum "$OUTDIR/$IMAGE_NAME" | cut -d' ' -f1)
echo "$SUM  $IMAGE_NAME" >"$OUTDIR/$IMAGE_NAME.sha256"
echo "$OUTDIR/$IMAGE_NAME"
echo "sha256 $SUM"
echo "size $(stat -c %s "$OUTDIR/$IMAGE_NAME") bytes (virtual ${DISK_MIB} MiB; kernel $KVER)"
