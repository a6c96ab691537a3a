#!/bin/sh
# Build tests/aarch64/ctx_qemu.c with sched/arch/aarch64.S for AArch64 and
# run it under qemu-aarch64 (user mode). Exit 0 pass, 1 fail, 77 skip (no
# cross compiler or no qemu), as ctest's SKIP_RETURN_CODE expects.
set -eu
cd "$(dirname "$0")/../.."

CC=${AARCH64_CC:-aarch64-linux-gnu-gcc}
QEMU=${QEMU_AARCH64:-qemu-aarch64}
if ! command -v "$CC" >/dev/null 2>&1; then
  echo "skip: $CC not found"
  exit 77
fi
if ! command -v "$QEMU" >/dev/null 2>&1; then
  echo "skip: $QEMU not found"
  exit 77
fi

dir=$(mktemp -d "${TMPDIR:-/tmp}/otter-aarch64.XXXXXX")
trap 'rm -rf "$dir"' EXIT INT TERM
"$CC" -static -O2 -pthread -Wall -Wextra -I. -o "$dir/ctx_qemu" \
  tests/aarch64/ctx_qemu.c sched/arch/aarch64.S
"$QEMU" "$dir/ctx_qemu"
