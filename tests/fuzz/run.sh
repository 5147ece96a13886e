#!/bin/sh
# Builds every libFuzzer target tests/fuzz/fuzz_*.c with clang (ASan + UBSan) into build/fuzz/
# and runs each for a bounded time.  `make fuzz` calls this.
#
#   tests/fuzz/run.sh [target...]     e.g. tests/fuzz/run.sh fuzz_envelope
#   FUZZ_TIME=300 tests/fuzz/run.sh   seconds per target (default 30)
#   FUZZ_BUILD_ONLY=1                 build, don't run
#
# A target is one C file defining LLVMFuzzerTestOneInput.  It names what it needs in its
# header comment (a key may take several lines), beyond common/*.c, the bus contract's code
# (proto/*.c) and the generated protobuf code, which always come (with their packages,
# libprotobuf-c, libcrypto and jansson):
#   fuzz-sources: storage/qcow2/qcow2.c
#   fuzz-pkgs: jansson
# Seeds live in tests/fuzz/corpus/<target>/ (committed, only read); what the fuzzer finds
# goes to build/fuzz/corpus/<target>/, crashes to build/fuzz/artifacts/.  An optional
# libFuzzer dictionary is tests/fuzz/<target>.dict.  Reproduce a crash with
#   build/fuzz/<target> build/fuzz/artifacts/<target>-crash-<sha1>
set -eu

cd "$(dirname "$0")/../.."
FUZZ_TIME=${FUZZ_TIME:-30}
CC=${FUZZ_CC:-clang}
OUT=build/fuzz
GEN=build/gen

SAN="-fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer"
BASE_CFLAGS="-g -O1 -std=gnu11 -D_GNU_SOURCE -I. -I$GEN $SAN"
# clang (unlike gcc) flags vasprintf(fmt) in common/error.c even with the format attribute.
WARN="-Wall -Wextra -Werror -Wno-missing-field-initializers -Wshadow -Wstrict-prototypes -Wformat=2
      -Wno-format-nonliteral"

make --no-print-directory -s "$GEN/nodeagent.pb-c.c" "$GEN/nodeagent.pb-c.h"
mkdir -p "$OUT/artifacts"

# The value of a "fuzz-<key>:" line in a target's source.
header() {
    sed -n "s/^.*fuzz-$2:[[:space:]]*//p" "$1" | tr '\n' ' '
}

build() {
    target=$1
    src=tests/fuzz/$target.c
    objdir=$OUT/obj/$target
    rm -rf "$objdir"
    mkdir -p "$objdir"
    pkgs="libprotobuf-c libcrypto jansson $(header "$src" pkgs)"
    # shellcheck disable=SC2086
    pkg_cflags=$(pkg-config --cflags $pkgs)
    # shellcheck disable=SC2086
    pkg_libs=$(pkg-config --libs $pkgs)
    objs=""
    # shellcheck disable=SC2046
    for s in $(ls common/*.c proto/*.c) $(header "$src" sources); do
        o=$objdir/$(echo "$s" | tr / _ | sed 's/\.c$/.o/')
        # shellcheck disable=SC2086
        $CC $BASE_CFLAGS $WARN $pkg_cflags -fsanitize=fuzzer-no-link -c -o "$o" "$s"
        objs="$objs $o"
    done
    # Generated code: no -Werror, as in the Makefile.
    # shellcheck disable=SC2086
    $CC $BASE_CFLAGS $pkg_cflags -fsanitize=fuzzer-no-link -c -o "$objdir/gen.o" "$GEN/nodeagent.pb-c.c"
    # shellcheck disable=SC2086
    $CC $BASE_CFLAGS $WARN $pkg_cflags -fsanitize=fuzzer -o "$OUT/$target" "$src" $objs \
        "$objdir/gen.o" $pkg_libs -lpthread -lm
}

run() {
    target=$1
    seeds=tests/fuzz/corpus/$target
    work=$OUT/corpus/$target
    log=$OUT/$target.log
    mkdir -p "$work"
    set -- -max_total_time="$FUZZ_TIME" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
        -artifact_prefix="$OUT/artifacts/$target-"
    [ -f "tests/fuzz/$target.dict" ] && set -- "$@" -dict="tests/fuzz/$target.dict"
    set -- "$@" "$work"
    [ -d "$seeds" ] && set -- "$@" "$seeds"
    if UBSAN_OPTIONS=print_stacktrace=1 "$OUT/$target" "$@" >"$log" 2>&1; then
        runs=$(sed -n 's/^Done \([0-9]*\) runs in \([0-9]*\) second.*/\1 runs in \2 s/p' "$log")
        cov=$(grep -o 'cov: [0-9]*' "$log" | tail -n 1)
        echo "fuzz: $target ok ($runs, $cov, corpus $(find "$work" -type f | wc -l) found)"
        return 0
    fi
    echo "fuzz: $target FAILED; log $log"
    grep -E '^(==[0-9]+==ERROR|SUMMARY|.*runtime error)' "$log" | head -n 5 || true
    for a in "$OUT/artifacts/$target-"*; do
        [ -e "$a" ] && echo "fuzz:   artifact $a"
    done
    return 1
}

if [ $# -gt 0 ]; then
    targets=$*
else
    targets=""
    for f in tests/fuzz/fuzz_*.c; do
        [ -e "$f" ] && targets="$targets $(basename "$f" .c)"
    done
fi
[ -n "$targets" ] || { echo "fuzz: no targets in tests/fuzz/"; exit 0; }

failed=0
for t in $targets; do
    build "$t"
    echo "fuzz: built $OUT/$t"
done
[ "${FUZZ_BUILD_ONLY:-0}" = 1 ] && exit 0
for t in $targets; do
    run "$t" || failed=$((failed + 1))
done
[ "$failed" -eq 0 ] || { echo "fuzz: $failed target(s) failed"; exit 1; }
