#!/usr/bin/env bash
# Build the fused kernels for every instruction set this machine can compile for and run the
# self-check (scripts/kernel_selfcheck.cpp: vector kernels against the float64 plain loops) on each.
# x86-64 builds run natively when the CPU has the instructions; the NEON build runs under
# qemu-aarch64 (Debian: g++-aarch64-linux-gnu qemu-user). Exit status 1 if any build fails its check.
set -uo pipefail
cd "$(dirname "$0")/.."
out=$(mktemp -d)
status=0
flags=$(grep -m1 -E '^flags' /proc/cpuinfo || true)
run() {  # name, runner, compiler, flags...
    local name=$1 runner=$2 cxx=$3; shift 3
    if ! command -v "$cxx" >/dev/null; then echo "$name: skipped ($cxx not installed)"; return; fi
    "$cxx" -O2 -fno-math-errno -std=c++17 "$@" src/odecheck/engine/_native.cpp scripts/kernel_selfcheck.cpp \
        -o "$out/$name" || { echo "$name: build FAILED"; status=1; return; }
    if $runner "$out/$name" > "$out/$name.log"; then
        echo "$name: $(head -1 "$out/$name.log"): $(tail -1 "$out/$name.log")"
    else
        echo "$name: FAILED"; cat "$out/$name.log"; status=1
    fi
}
[[ $flags == *avx512f* ]] && run avx512 "" g++ -march=x86-64-v4 || echo "avx512: skipped (CPU lacks it)"
[[ $flags == *avx2* ]] && run avx2 "" g++ -march=x86-64-v3 || echo "avx2: skipped (CPU lacks it)"
[[ $(uname -m) == x86_64 ]] && run sse2 "" g++ -march=x86-64
run scalar "" g++ -DODECHECK_SCALAR
if command -v qemu-aarch64 >/dev/null; then
    run neon qemu-aarch64 aarch64-linux-gnu-g++ -march=armv8-a -static
else
    echo "neon: skipped (qemu-aarch64 not installed)"
fi
rm -rf "$out"
exit $status
