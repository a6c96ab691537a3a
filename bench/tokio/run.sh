#!/usr/bin/env bash
# Run the Tokio side of the comparison (the peer the issue's goals name).
#
# usage: bench/tokio/run.sh OUT.tsv [--filter REGEX] [--repetitions N]
#
# Builds bench/tokio offline against Debian's librust-tokio-dev (its crates
# live in /usr/share/cargo/registry; no network is used) into
# ${OTTER_TOKIO_TARGET:-build/tokio}, then runs it: a table on stdout, one
# TSV row per workload (the medians) in OUT.tsv, the format otter-bench
# --baseline reads.
set -euo pipefail
[ $# -ge 1 ] || { echo "usage: $0 OUT.tsv [--filter REGEX] [--repetitions N]" >&2; exit 2; }
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
registry=/usr/share/cargo/registry
if ! command -v cargo >/dev/null 2>&1 || ! ls -d "$registry"/tokio-1.* >/dev/null 2>&1; then
  echo "$0: needs cargo and Debian's Tokio sources; run: apt-get install -y cargo librust-tokio-dev" >&2
  exit 127
fi
target=${OTTER_TOKIO_TARGET:-$here/../../build/tokio}
mkdir -p "$target"
# Crates from Debian's registry only: a CARGO_HOME of our own whose config
# replaces crates.io with that directory.
export CARGO_HOME="$target/cargo-home"
mkdir -p "$CARGO_HOME"
cat >"$CARGO_HOME/config.toml" <<CFG
[source.crates-io]
replace-with = "debian"
[source.debian]
directory = "$registry"
[net]
offline = true
CFG
cargo build --quiet --release --manifest-path "$here/Cargo.toml" --target-dir "$target"
"$target/release/otter-tokio-bench" "$@"
