#!/usr/bin/env bash
# The two-thread cases, in back-to-back rounds: one table row per round.
#
# A two-thread figure is bounded by how fast a cache line moves between the
# two CPUs, and on a VM that changes when the host moves the vCPUs (here it
# ranged from tens to hundreds of ns per line round trip). Within a round the
# contenders run one after the other in about a second, so they nearly always
# share the placement: compare within a row, and read the row's ping-pong
# column for the placement it ran under.
#
# usage: bench/micro/rounds_2t.sh [BUILD_DIR=build] [ROUNDS=8] [MIN_TIME=0.1]
set -euo pipefail
build=${1:-build}
rounds=${2:-8}
min_time=${3:-0.1}
bin=$build/bench/micro/otter-micro
[[ -x $bin ]] || { echo "no $bin: build first" >&2; exit 1; }

cases=(baseline/xcore_pingpong
       mbox_2t/otter_mpsc mbox_2t/urcu_wfcq mbox_2t/urcu_wfcq_blocking mbox_2t/ck_fifo_mpmc
       pool_remote_2t/otter_pool pool_remote_2t/otter_pool_magazines
       pool_remote_2t/malloc)
filter=$(IFS='|'; echo "^(${cases[*]})/")

echo "ns per iteration (line round trip, message, object)"
printf '| round |'; printf ' %s |' "${cases[@]}"; echo
printf '|---|'; printf -- '---:|%.0s' "${cases[@]}"; echo
for r in $(seq "$rounds"); do
    # CSV: name,iterations,real_time,cpu_time,time_unit,...
    "$bin" --benchmark_filter="$filter" --benchmark_min_time="$min_time" \
        --benchmark_format=csv 2>/dev/null |
        awk -F, -v r="$r" -v order="${cases[*]}" '
            NR > 1 { n = $1; gsub(/"/, "", n); sub(/\/manual_time$/, "", n); t[n] = $3 }
            END {
                k = split(order, c, " ")
                printf "| %d |", r
                for (i = 1; i <= k; i++) printf " %s |", (c[i] in t) ? sprintf("%.1f", t[c[i]]) : "-"
                print ""
            }'
done
