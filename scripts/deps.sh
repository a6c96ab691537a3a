#!/usr/bin/env bash
# Installs what otter needs to build, test and benchmark, on Debian.
# Does nothing when everything is present. As root it runs apt-get itself
# (after apt-get update: a fresh machine's package lists may be empty);
# otherwise it prints the one command to run and fails.
set -euo pipefail

# Debian package : how we know it is present
checks=(
  "cmake:command -v cmake"
  "make:command -v make"
  "g++:command -v g++"
  "pkg-config:command -v pkg-config"
  "libhwloc-dev:pkg-config --exists hwloc"
  "liburcu-dev:pkg-config --exists liburcu-qsbr"
  "libck-dev:pkg-config --exists ck"
  "libcmocka-dev:pkg-config --exists cmocka"
  "libbenchmark-dev:pkg-config --exists benchmark"
  "valgrind:test -f /usr/include/valgrind/valgrind.h"
)

# `deps.sh test` also brings what the tests need beyond the build: the AArch64
# cross compiler, its C library headers (only a Recommends of the compiler,
# which --no-install-recommends leaves out) and qemu-user, for the AArch64
# context-switch test.
if [ "${1:-}" = test ]; then
  checks+=(
    "clang-format:command -v clang-format"
    "gcc-aarch64-linux-gnu:command -v aarch64-linux-gnu-gcc"
    "libc6-dev-arm64-cross:test -f /usr/aarch64-linux-gnu/include/bits/wordsize.h"
    "qemu-user:command -v qemu-aarch64"
  )
fi

missing=()
for entry in "${checks[@]}"; do
  pkg=${entry%%:*}
  test=${entry#*:}
  if ! eval "$test" >/dev/null 2>&1; then missing+=("$pkg"); fi
done

[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" -eq 0 ]; then
  echo "deps: installing ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}"
else
  echo "deps: missing packages; run as root:" >&2
  echo "  sudo apt-get update && sudo apt-get install -y ${missing[*]}" >&2
  exit 1
fi
