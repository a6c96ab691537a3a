#!/usr/bin/env bash
# make bench-compare: run the BEAM's versions of the workloads (bench/erlang)
# and otter-bench on the same machine in one run, and print both with the
# ratio (BEAM ns/op / otter ns/op; for idle_process_bytes, BEAM bytes /
# otter bytes). Extra arguments (--filter, --repetitions) go to both.
set -euo pipefail
BUILD=${1:-build}
shift || true
if ! command -v erl >/dev/null 2>&1; then
  echo "bench-compare: erl is not installed; run: apt-get install -y erlang-nox" >&2
  exit 1
fi
tsv=$(mktemp --suffix=.tsv)
trap 'rm -f "$tsv"' EXIT
echo "== BEAM ($(erl -noshell -eval 'io:format("~s", [erlang:system_info(otp_release)]), halt().'), 2 schedulers)"
bash bench/erlang/run.sh "$tsv" "$@"
echo
echo "== otter"
"$BUILD"/bench/otter-bench --baseline "$tsv" "$@"
