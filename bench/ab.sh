#!/usr/bin/env bash
# A/B two or more otter-bench binaries on a noisy machine: runs them in
# turn, ROUNDS times, each with --repetitions 3 --filter FILTER, and prints
# every figure and the median per workload. Copy a build's
# build/bench/otter-bench aside (it links libotter statically) to compare
# it with another.
#   bash bench/ab.sh ROUNDS FILTER BIN_A BIN_B [BIN...]
set -euo pipefail
[ $# -ge 3 ] || { echo "usage: $0 ROUNDS FILTER BIN_A BIN_B [BIN...]" >&2; exit 2; }
rounds=$1 filter=$2
shift 2
declare -A res
for _ in $(seq "$rounds"); do
  for b in "$@"; do
    res[$b]+=" $("$b" --repetitions 3 --filter "$filter" 2>/dev/null |
      awk -v f="^($filter)\$" '$1 ~ f && $2 != "-" {printf "%s:%s ", $1, $2}')"
  done
done
for b in "$@"; do
  echo "$b:${res[$b]}"
  for w in $(tr ' ' '\n' <<<"${res[$b]}" | cut -d: -s -f1 | sort -u); do
    tr ' ' '\n' <<<"${res[$b]}" | grep "^$w:" | cut -d: -f2 | sort -n |
      awk -v w="$w" '{a[NR] = $1} END {print "  median " w " " a[int((NR + 1) / 2)]}'
  done
done
