#!/bin/sh
# Runs every benchmark program and rewrites docs/benchmarks.md.  `make bench` builds them and
# calls this; it builds nothing itself.
#
#   bench/run.sh BUILD_DIR            e.g. bench/run.sh "$PWD/build/release"
#   BENCH_COUNT=50 bench/run.sh ...   overlays per tool and base (default 200)
#   BENCH_CREATE_COUNT=10             create latency samples per tool (default 10)
#   BENCH_CREATE_ROUNDS=3             rounds of 10 sequential / 10 concurrent creates (default 3)
#   BENCH_OVS_ROUNDS=10               rounds of OVS convergence per tool (default 10)
#   BENCH_CLONE_COUNT=5               clones, and snapshot rounds, of each tool (default 5)
#   BENCH_TPUT_ROUNDS=3               TCP throughput samples with and without security groups
#   BENCH_SCRAPES=50                  scrapes of each, agent and prometheus-libvirt-exporter,
#                                     with 20 guests (default 50)
#   PYTHON=/usr/bin/python3           the Python with python3-libvirt (default that one)
#   BENCH_DIR=/var/lib/x bench/run.sh where the images go (default a new dir under $TMPDIR,
#                                     or /tmp); the filesystem matters, since both tools fsync
#
# Each program prints Markdown sections on stdout; the document is only replaced when all of
# them succeed, so a failed run never leaves half a report behind.  bench/create_latency.py
# starts (and stops) its own private libvirt + OVS host, devbus, agent and image server;
# bench/ovs_converge.py its own private OVS host (with and without security groups);
# bench/sg_throughput.py its own host, agent and two guests;
# bench/guest_metrics_scrape.py the stack of bench/create_latency.py and
# prometheus-libvirt-exporter; bench/disk_copies.py that stack, virt-clone and virsh;
# bench/idle_memory.py its own host and agent.
set -eu

[ $# -eq 1 ] || { echo "usage: bench/run.sh BUILD_DIR" >&2; exit 2; }
build=$1
cd "$(dirname "$0")/.."
out=docs/benchmarks.md
count=${BENCH_COUNT:-200}
create_count=${BENCH_CREATE_COUNT:-10}
create_rounds=${BENCH_CREATE_ROUNDS:-3}
python=${PYTHON:-/usr/bin/python3}
qemu_img=$(command -v qemu-img) || { echo "bench: qemu-img not found" >&2; exit 1; }

work=$(mktemp -d "${BENCH_DIR:-${TMPDIR:-/tmp}}/nodeagent-bench.XXXXXX")
trap 'rm -rf "$work"' EXIT INT TERM

# One base of each format the agent backs overlays with, 2 GiB, made once.
"$qemu_img" create -q -f qcow2 "$work/base.qcow2" 2G
"$qemu_img" create -q -f raw "$work/base.raw" 2G
mkdir "$work/overlays"

started=$(date -u '+%Y-%m-%d %H:%M:%S UTC')
t0=$(date +%s)

echo "bench: overlay ($count overlays per tool and base)" >&2
"$build/bench/overlay" --count "$count" --dir "$work/overlays" --qemu-img "$qemu_img" \
    --base "qcow2:$work/base.qcow2" --base "raw:$work/base.raw" >"$work/overlay.md"

echo "bench: create latency ($create_count creates per tool) and 10 concurrent against 10" \
    "sequential creates ($create_rounds rounds)" >&2
"$python" bench/create_latency.py --build "$build" --count "$create_count" \
    --rounds "$create_rounds" >"$work/create.md"

echo "bench: idle memory of the agent" >&2
"$python" bench/idle_memory.py --build "$build" >"$work/memory.md"

echo "bench: OVS convergence (200 ports on 50 networks, against ovs-ofctl add-flows)" >&2
"$python" bench/ovs_converge.py --build "$build" --ports 200 --networks 50 \
    --rounds "${BENCH_OVS_ROUNDS:-10}" >"$work/ovs.md"
echo "bench: OVS convergence with security groups (50 rules, 200 members per group)" >&2
"$python" bench/ovs_converge.py --build "$build" --ports 200 --networks 50 --rules 50 \
    --members 200 --rounds "${BENCH_OVS_ROUNDS:-10}" >"$work/ovs-sg.md"

echo "bench: clone and snapshots of a running guest (against virt-clone and virsh)" >&2
"$python" bench/disk_copies.py --build "$build" --count "${BENCH_CLONE_COUNT:-5}" >"$work/copies.md"

echo "bench: TCP between two guests with and without the security groups' conntrack stage" >&2
"$python" bench/sg_throughput.py --build "$build" --rounds "${BENCH_TPUT_ROUNDS:-3}" \
    >"$work/tput.md"

echo "bench: scraping the metrics of 20 guests (against prometheus-libvirt-exporter)" >&2
"$python" bench/guest_metrics_scrape.py --build "$build" --guests 20 \
    --scrapes "${BENCH_SCRAPES:-50}" >"$work/scrape.md"

model=$(sed -n 's/^model name[[:space:]]*:[[:space:]]*//p' /proc/cpuinfo | head -n 1)
fstype=$(df -P -T "$work" | awk 'NR == 2 { print $2 }')
{
    echo "# Benchmarks"
    echo
    echo "Produced by \`make bench\` (\`bench/run.sh\`) on $started; the run took" \
        "$(($(date +%s) - t0)) s.  Do not edit by hand: run \`make bench\` again."
    echo
    echo "- machine: $(nproc) CPUs, ${model:-unknown CPU model}"
    echo "- kernel: $(uname -sr)"
    echo "- peers: $("$qemu_img" --version | head -n 1); virsh, virt-install, ovs-ofctl and prometheus-libvirt-exporter (versions in their sections)"
    echo "- images in: \`$(dirname "$work")\` ($fstype)"
    echo "- commit: $(git rev-parse --short HEAD 2>/dev/null || echo unknown)$(git diff --quiet HEAD -- . ':!docs/benchmarks.md' 2>/dev/null || echo ' (with local changes)')"
    echo
    echo "Each benchmark runs our code and the peer tool side by side in the same run and"
    echo "reports medians and their ratio; tests hold no timing thresholds."
    echo
    cat "$work/overlay.md"
    echo
    cat "$work/create.md"
    echo
    cat "$work/ovs.md"
    echo
    cat "$work/scrape.md"
    cat "$work/memory.md"
    cat "$work/ovs-sg.md"
    echo
    cat "$work/copies.md"
    echo
    cat "$work/tput.md"
} >"$work/benchmarks.md"
mv "$work/benchmarks.md" "$out"
echo "bench: wrote $out" >&2
