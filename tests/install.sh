#!/usr/bin/env bash
# Installs the build into a temporary prefix, then checks what a user gets:
# headers, otter.pc, the CMake package, and a shared library that exports
# only ot_ names. Builds examples/echo.c both ways and runs it.
set -euo pipefail
build=$1
src=$(cd "$(dirname "$0")/.." && pwd)
prefix=$(mktemp -d)
trap 'rm -rf "$prefix"' EXIT
cmake --install "$build" --prefix "$prefix" >/dev/null

lib=$(find "$prefix" -name "libotter.so*" -type f | head -1)
[ -n "$lib" ] || { echo "no libotter.so installed"; exit 1; }
bad=$(nm -D --defined-only "$lib" | awk '$2 ~ /[TDBR]/ {print $3}' | grep -v '^ot_[a-z]' || true)
if [ -n "$bad" ]; then echo "exported non-ot_ symbols:"; echo "$bad"; exit 1; fi

pcdir=$(dirname "$(find "$prefix" -name otter.pc | head -1)")
PKG_CONFIG_PATH=$pcdir cc -std=c17 "$src/examples/echo.c" -o "$prefix/echo" \
  $(PKG_CONFIG_PATH=$pcdir pkg-config --cflags --libs otter) -Wl,-rpath,"$(dirname "$lib")"
"$prefix/echo" | grep -q "echo replied: hi"

mkdir -p "$prefix/cm" && cat > "$prefix/cm/CMakeLists.txt" <<CM
cmake_minimum_required(VERSION 3.18)
project(use_otter C)
find_package(otter REQUIRED)
add_executable(echo $src/examples/echo.c)
target_link_libraries(echo otter::otter_static)
CM
cmake -S "$prefix/cm" -B "$prefix/cm/b" -DCMAKE_PREFIX_PATH="$prefix" >/dev/null
cmake --build "$prefix/cm/b" >/dev/null
"$prefix/cm/b/echo" | grep -q "echo replied: hi"
echo "install: headers, otter.pc, CMake package, exports: ok"
echo "1 passed, 0 failed"
