#!/usr/bin/env bash
# Run the BEAM (Erlang/OTP) side of the otter benchmark comparison.
#
# usage: bench/erlang/run.sh OUT.tsv [--filter REGEX] [--repetitions N (5)]
#
# Compiles otter_bench.erl into a temporary directory and runs it on a VM
# with exactly 2 schedulers (the benchmark machine has 2 cores).  Prints a
# table on stdout and writes one TSV row per workload to OUT.tsv.
#
# VM flags:
#   +S 2:2       2 schedulers, 2 online
#   +P 4194304   raise the process limit (default 262144): skynet has
#                1,111,111 processes and idle_process_bytes 1,000,000
#                alive at once
set -euo pipefail

usage() {
    echo "usage: $0 OUT.tsv [--filter REGEX] [--repetitions N (5)]" >&2
}

if [[ $# -lt 1 ]]; then
    usage
    exit 2
fi

for tool in erl erlc; do
    if ! command -v "$tool" >/dev/null 2>&1; then
        echo "$0: '$tool' not found in PATH; install Erlang/OTP (25 or newer) to run the BEAM benchmarks" >&2
        exit 127
    fi
done

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
build=$(mktemp -d "${TMPDIR:-/tmp}/otter_bench.XXXXXX")
trap 'rm -rf "$build"' EXIT

erlc -o "$build" "$here/otter_bench.erl"

# The benchmark arguments are passed after -extra (as plain arguments, so
# no quoting into an Erlang term is needed); main/1 halts with a non-zero
# status on failure, otherwise `-s init stop` ends the VM with status 0.
erl +S 2:2 +P 4194304 -noshell -pa "$build" \
    -eval 'otter_bench:main(init:get_plain_arguments())' \
    -s init stop \
    -extra "$@"
