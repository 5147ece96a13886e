#!/bin/sh
# Cross-checks storage/qcow2 against qemu-img (package qemu-utils):
#  1. images qemu-img makes (v2, v3, compressed, snapshots, odd cluster and refcount sizes,
#     extended L2, lazy refcounts, bitmaps, resized) pass qcow2_validate with qemu-img's
#     virtual size; images with a backing file, an external data file or LUKS encryption
#     are refused;
#  2. overlays written by qcow2_overlay_create pass `qemu-img check`, `qemu-img info` agrees
#     on virtual size, backing file and backing format, they read through to their base
#     (`qemu-img compare`), and stay valid after QEMU writes to them (qemu-io).
# The validation runs in test_qcow2's corpus test (NODEAGENT_QCOW2_CORPUS).
# Usage: tests/system/qcow2_corpus.sh [build dir: build/release (default) or build/asan]
set -eu

BUILD=${1:-build/release}
TEST=$BUILD/tests/unit/test_qcow2
command -v qemu-img >/dev/null || { echo "qcow2_corpus: qemu-img missing (apt-get install qemu-utils)" >&2; exit 2; }
case $BUILD in *asan*) SAN=1 ;; *) SAN=0 ;; esac
make --no-print-directory SANITIZE=$SAN "$TEST" >/dev/null

DIR=$(mktemp -d /tmp/qcow2_corpus.XXXXXX)
trap 'rm -rf "$DIR"' EXIT
cd "$DIR"
failures=0
fail() {
    echo "qcow2_corpus: FAIL: $*"
    failures=$((failures + 1))
}
json() { # json <file> <key>: one key of qemu-img info --output=json
    qemu-img info --output=json "$1" | python3 -c "import json,sys; print(json.load(sys.stdin).get('$2', ''))"
}
q() { qemu-img "$@" >/dev/null; }

# A 64 MiB raw base with data in a few places, and holes.
truncate -s 64M base.raw
for off in 0 5 17 63; do
    dd if=/dev/urandom of=base.raw bs=1M count=1 seek=$off conv=notrunc status=none
done
dd if=/dev/zero of=base.raw bs=1M count=1 seek=30 conv=notrunc status=none
# Compressible data, so that `convert -c` really writes compressed clusters.
seq 1 200000 | dd of=base.raw bs=1M seek=40 conv=notrunc status=none

q convert -O qcow2 base.raw base-v3.qcow2
q convert -O qcow2 -o compat=0.10 base.raw v2.qcow2
q convert -c -O qcow2 base.raw compressed.qcow2
q convert -c -O qcow2 -o compat=0.10 base.raw compressed-v2.qcow2
q convert -c -O qcow2 -o compression_type=zstd base.raw zstd.qcow2 2>/dev/null || echo "qcow2_corpus: no zstd in this qemu-img, skipped"
q convert -O qcow2 -o cluster_size=512 base.raw cluster512.qcow2
q convert -O qcow2 -o cluster_size=2M base.raw cluster2M.qcow2
q convert -O qcow2 -o extended_l2=on base.raw extl2.qcow2
q convert -O qcow2 -o refcount_bits=1 base.raw refcount1.qcow2
q convert -O qcow2 -o refcount_bits=64 base.raw refcount64.qcow2
q convert -O qcow2 -o lazy_refcounts=on base.raw lazy.qcow2
q convert -O qcow2 -o preallocation=metadata base.raw prealloc.qcow2
q create -f qcow2 empty-1T.qcow2 1T
q create -f qcow2 -o compat=0.10 empty-v2.qcow2 10G
cp base-v3.qcow2 snapshots.qcow2
q snapshot -c first snapshots.qcow2
qemu-io -c 'write -P 0x33 1M 2M' snapshots.qcow2 >/dev/null
q snapshot -c second snapshots.qcow2
cp v2.qcow2 snapshots-v2.qcow2
q snapshot -c first snapshots-v2.qcow2
cp base-v3.qcow2 grown.qcow2
q resize grown.qcow2 100G
cp base-v3.qcow2 shrunk.qcow2
q resize --shrink shrunk.qcow2 32M
cp base-v3.qcow2 bitmap.qcow2
q bitmap --add bitmap.qcow2 b0 2>/dev/null || echo "qcow2_corpus: qemu-img bitmap unsupported, skipped"
q create -f qcow2 -b "$DIR/base-v3.qcow2" -F qcow2 overlay.backed.qcow2 128M

# Must be refused.
q create -f qcow2 -b "$DIR/base-v3.qcow2" -F qcow2 backing.bad.qcow2
q create -f qcow2 -o data_file="$DIR/datafile.img" datafile.bad.qcow2 64M
# LUKS creation times its key derivation and fails now and then on a loaded machine
# ("Unable to get accurate CPU usage"): try a few times.
for try in 1 2 3 4 5; do
    qemu-img create -f qcow2 --object secret,id=sec0,data=hunter2 \
        -o encrypt.format=luks,encrypt.key-secret=sec0,encrypt.iter-time=50 \
        luks.bad.qcow2 64M >/dev/null 2>&1 && break
    [ "$try" = 5 ] && q create -f qcow2 --object secret,id=sec0,data=hunter2 \
        -o encrypt.format=luks,encrypt.key-secret=sec0,encrypt.iter-time=50 luks.bad.qcow2 64M
done
# The raw rule: an image declared raw must not be another format, as qemu-img writes them
# (a qcow2 with a backing file, and every other format a tool might probe).
cp backing.bad.qcow2 qcow2-as.bad.raw
for spec in "qed" "vmdk" "vmdk -o subformat=streamOptimized" "vhdx" "vpc" \
    "vpc -o subformat=fixed" "vdi" "parallels"; do
    set -- $spec
    name=$(echo "$spec" | tr -c 'a-zA-Z0-9\n' '-' | sed 's/--*/-/g')
    q create -f "$@" "$name-as.bad.raw" 16M 2>/dev/null || echo "qcow2_corpus: qemu-img cannot create $spec, skipped"
done
q create -f luks --object secret,id=sec0,data=x -o key-secret=sec0,iter-time=50 luks-as.bad.raw 16M \
    2>/dev/null || echo "qcow2_corpus: qemu-img cannot create luks, skipped"

for f in *.qcow2 *.raw; do
    case $f in *.bad.qcow2 | *.bad.raw) continue ;; esac
    fmt=qcow2
    case $f in *.raw) fmt=raw ;; esac
    qemu-img info -f "$fmt" --output=json "$f" |
        python3 -c "import json,sys; print(json.load(sys.stdin)['virtual-size'])" >"$f.vsize"
done

echo "qcow2_corpus: validating $(ls *.qcow2 *.raw | wc -l) images in $DIR"
if ! NODEAGENT_QCOW2_CORPUS=$DIR "$OLDPWD/$TEST" >test.log 2>&1; then
    fail "test_qcow2 corpus run"
fi
grep '^corpus:' test.log || true
grep -E 'FAILED|ERROR' test.log || true

# Our overlays, judged by qemu-img.
for pair in "over-qcow2.qcow2 base-v3.qcow2 qcow2" "over-raw.qcow2 base.raw raw"; do
    set -- $pair
    ov=out/$1
    [ -f "$ov" ] || { fail "$ov missing"; continue; }
    check=$(qemu-img check "$ov" 2>&1) || fail "qemu-img check $ov: $check"
    case $check in *"No errors were found"*) ;; *) fail "qemu-img check $ov: $check" ;; esac
    vs=$(json "$ov" virtual-size)
    bf=$(json "$ov" backing-filename)
    bfmt=$(json "$ov" backing-filename-format)
    [ "$vs" = 3221225472 ] || fail "$ov virtual size $vs"
    [ "$bf" = "$DIR/$2" ] || fail "$ov backing file $bf"
    [ "$bfmt" = "$3" ] || fail "$ov backing format $bfmt"
    qemu-img compare -f qcow2 -F "$3" "$ov" "$2" >/dev/null || fail "$ov does not read as its base"
    mode=$(stat -c %a "$ov")
    [ "$mode" = 600 ] || fail "$ov mode $mode"
    qemu-io -c 'write -P 0x5a 0 3M' -c 'write -P 0xa5 2G 1M' "$ov" >/dev/null || fail "qemu-io write $ov"
    check=$(qemu-img check "$ov" 2>&1) || fail "qemu-img check after writes $ov: $check"
    echo "qcow2_corpus: $ov ok: virtual-size=$vs backing=$bf format=$bfmt, written by qemu-io, $(echo "$check" | tail -n 1)"
done

# Overlays after QEMU wrote to them must still validate.
mkdir written
cp out/over-qcow2.qcow2 written/after-write.backed.qcow2
echo 3221225472 >written/after-write.backed.qcow2.vsize
if ! NODEAGENT_QCOW2_CORPUS=$DIR/written "$OLDPWD/$TEST" >test2.log 2>&1; then
    fail "overlay written by QEMU refused: $(grep '^corpus:' test2.log)"
fi
grep '^corpus: after' test2.log || true

if [ "$failures" -ne 0 ]; then
    echo "qcow2_corpus: $failures failure(s)"
    exit 1
fi
echo "qcow2_corpus: all passed"
