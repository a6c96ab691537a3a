#!/usr/bin/env bash
# make bench-compare: run a peer's versions of the workloads and otter-bench
# on the same machine in one run, and print both with the ratio (peer ns/op
# / otter ns/op; for idle_process_bytes, peer bytes / otter bytes). Extra
# arguments (--filter, --repetitions) go to both.
#   PEER=beam (default): bench/erlang on Erlang/OTP, 2 schedulers
#   PEER=tokio: bench/tokio on Tokio's multi-threaded runtime, 2 workers
#
# Workload by workload: the peer's run of a workload, then otter's, then the
# next workload. A virtual machine's speed drifts by tens of percent over
# minutes (a neighbour on the host); run as two blocks, one side's figures
# could come from a fast spell and the other's from a slow one, and the
# ratio would measure the host. Side by side in time, both see the same one.
set -euo pipefail
BUILD=${1:-build}
shift || true
bench="$BUILD/bench/otter-bench"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# --filter is applied here, one workload at a time; the rest goes to both.
filter=. args=()
while [ $# -gt 0 ]; do
  case $1 in
  --filter) filter=$2; shift 2 ;;
  --filter=*) filter=${1#*=}; shift ;;
  *) args+=("$1"); shift ;;
  esac
done

ws=()
for w in $("$bench" --list | awk '$1 != "policies:" { print $1 }'); do
  if [[ $w =~ $filter ]]; then ws+=("$w"); fi
done
[ ${#ws[@]} -gt 0 ] || { echo "bench-compare: no workload matches $filter" >&2; exit 2; }

case ${PEER:-beam} in
beam)
  if ! command -v erl >/dev/null 2>&1; then
    echo "bench-compare: erl is not installed; run: apt-get install -y erlang-nox" >&2
    exit 1
  fi
  name=BEAM
  echo "== BEAM ($(erl -noshell -eval 'io:format("~s", [erlang:system_info(otp_release)]), halt().'), 2 schedulers)"
  peer() { bash bench/erlang/run.sh "$@"; }
  ;;
tokio)
  name=Tokio
  echo "== Tokio (2 workers)"
  peer() { OTTER_TOKIO_TARGET="$BUILD/tokio" bash bench/tokio/run.sh "$@"; }
  ;;
*)
  echo "bench-compare: PEER must be beam or tokio" >&2
  exit 2
  ;;
esac

# The first workload's output whole; of the others, their rows and notes.
keep() { awk -v w="$1" -v all="$2" 'all ? (NF && !/^wrote /) : ($1 == w || /^note:/)'; }

all=1
for w in "${ws[@]}"; do
  peer "$work/$w.tsv" --filter "^$w\$" "${args[@]}" | keep "$w" "$all"
  "$bench" --baseline "$work/$w.tsv" --baseline-name "$name" --filter "^$w\$" "${args[@]}" |
    keep "$w" "$all" >>"$work/otter.out"
  all=0
done
echo
echo "== otter"
cat "$work/otter.out"
