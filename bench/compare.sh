#!/usr/bin/env bash
# make bench-compare: run a peer's versions of the workloads and otter-bench
# on the same machine in one run, and print both with the ratio (peer ns/op
# / otter ns/op; for idle_process_bytes, peer bytes / otter bytes). Extra
# arguments (--filter, --repetitions) go to both.
#   PEER=beam (default): bench/erlang on Erlang/OTP, 2 schedulers
#   PEER=tokio: bench/tokio on Tokio's multi-threaded runtime, 2 workers
set -euo pipefail
BUILD=${1:-build}
shift || true
tsv=$(mktemp --suffix=.tsv)
trap 'rm -f "$tsv"' EXIT
case ${PEER:-beam} in
beam)
  if ! command -v erl >/dev/null 2>&1; then
    echo "bench-compare: erl is not installed; run: apt-get install -y erlang-nox" >&2
    exit 1
  fi
  echo "== BEAM ($(erl -noshell -eval 'io:format("~s", [erlang:system_info(otp_release)]), halt().'), 2 schedulers)"
  bash bench/erlang/run.sh "$tsv" "$@"
  ;;
tokio)
  echo "== Tokio (2 workers)"
  OTTER_TOKIO_TARGET="$BUILD/tokio" bash bench/tokio/run.sh "$tsv" "$@"
  name=Tokio
  ;;
*)
  echo "bench-compare: PEER must be beam or tokio" >&2
  exit 2
  ;;
esac
echo
echo "== otter"
"$BUILD"/bench/otter-bench --baseline "$tsv" --baseline-name "${name:-BEAM}" "$@"
