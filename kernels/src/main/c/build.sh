#!/bin/sh
# Builds the native CPU kernels (lg_cpu.c) into a JNI library with gcc, packed into the jar as
# native/linux-x86_64/liblg_cpu.so. Without gcc (or off Linux x86-64) it prints a line and
# succeeds: NativeCpu then reports itself unavailable and the Vector API kernels run everything.
# When gcc fails, this fails. Skips the compile when the library is newer than its sources.
#
# usage: build.sh SOURCE_DIR OUTPUT_FILE JAVA_HOME
# environment: CC (default gcc)
set -eu

src=$1
out=$2
jhome=$3
cc=${CC:-gcc}

if [ "$(uname -s)" != Linux ] || [ "$(uname -m)" != x86_64 ]; then
    echo "[native] not Linux x86-64 ($(uname -s) $(uname -m)): skipping the native CPU kernels"
    exit 0
fi
if ! command -v "$cc" >/dev/null 2>&1; then
    echo "[native] $cc not on the PATH: skipping the native CPU kernels (the Vector API kernels run everything)"
    exit 0
fi
if [ ! -f "$jhome/include/jni.h" ]; then
    echo "[native] no jni.h under $jhome/include: skipping the native CPU kernels"
    exit 0
fi
if [ -s "$out" ] && [ -z "$(find "$src" \( -name '*.c' -o -name '*.h' -o -name 'build.sh' \) -newer "$out" | head -n 1)" ]; then
    echo "[native] $out is up to date"
    exit 0
fi
mkdir -p "$(dirname "$out")"
tmp="$out.tmp.$$"
trap 'rm -f "$tmp"' EXIT
# no -march: the AVX-512 BF16 functions carry their own target attribute and run only where the
# CPU has them; -ffp-contract=off keeps the float32 chunk sums as written (no fused reassociation)
"$cc" -O3 -std=c11 -fPIC -shared -ffp-contract=off -fvisibility=hidden -Wall -Wextra -Werror \
    -I"$jhome/include" -I"$jhome/include/linux" -o "$tmp" "$src/lg_cpu.c"
mv "$tmp" "$out"
echo "[native] built $out ($(wc -c <"$out") bytes) with $("$cc" --version | head -n 1)"
