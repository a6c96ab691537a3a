#!/usr/bin/env bash
# Side-by-side report of scheduling policies on the same workloads, in one
# run: ns/op (or the workload's value) per policy, and the scheduler
# counters (steals, parks, wake-ups) that explain the differences.
#
#   perf/compare_policies.sh [BUILD] [otter-bench args, e.g. --filter ring]
#   POLICIES="default random" perf/compare_policies.sh build
set -euo pipefail
BUILD=${1:-build}
shift || true
bench="$BUILD/bench/otter-bench"
[ -x "$bench" ] || { echo "compare_policies: build first ($bench missing)" >&2; exit 1; }
policies=${POLICIES:-$("$bench" --list | awk '/^policies:/ {$1=""; print}')}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

for p in $policies; do
  echo "running policy $p ..." >&2
  "$bench" --policy "$p" --stats "$@" >"$tmp/$p.out" 2>"$tmp/$p.err"
done

printf '%-20s' "workload"
for p in $policies; do printf ' %14s' "$p"; done
printf '\n'
names=$(awk 'NR > 1 {print $1}' "$tmp/$(echo $policies | awk '{print $1}').out")
for n in $names; do
  printf '%-20s' "$n"
  for p in $policies; do
    v=$(awk -v n="$n" '$1 == n { print ($2 == "-" ? $8 : $2) }' "$tmp/$p.out")
    printf ' %14s' "${v:--}"
  done
  printf '\n'
done
echo
echo "scheduler counters (per workload, per policy):"
for p in $policies; do
  sed "s/^/  $p  /" "$tmp/$p.err"
done
