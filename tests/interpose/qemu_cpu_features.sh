#!/bin/sh
# Usage: qemu_cpu_features.sh ANYKVM CPU [QEMU]
# Issue 4's "done when": QEMU started on anykvm with `-cpu CPU` prints no
# "host doesn't support requested feature" warning for an FPU/SIMD feature
# (anykvm's KVM_GET_SUPPORTED_CPUID must offer what the model requests), and
# is still running ~3 s later (no fatal KVM error, e.g. the XSAVE size assert).
# Exits 77 (skipped) without QEMU.
anykvm=$1
cpu=$2
qemu=${3:-qemu-system-i386}
if ! command -v "$qemu" >/dev/null 2>&1; then
  echo "$qemu is not installed: skipped"
  exit 77
fi
err=$(mktemp)
trap 'rm -f "$err"' EXIT
# `anykvm exec` execs QEMU, so $! is QEMU itself.
"$anykvm" exec -- "$qemu" -cpu "$cpu" -enable-kvm -m 64M -nographic -net none </dev/null >/dev/null 2>"$err" &
pid=$!
sleep 3
alive=yes
kill -0 "$pid" 2>/dev/null || alive=no
kill "$pid" 2>/dev/null
wait "$pid" 2>/dev/null
cat "$err"
status=0
if [ "$alive" = no ]; then
  echo "FAIL: $qemu -cpu $cpu exited within 3 s"
  status=1
fi
bad=$(grep "host doesn't support requested feature" "$err" |
      grep -E '\.(fpu|mmx|mmxext|fxsr|fxsr-opt|sse|sse2|pni|sse3|ssse3|sse4[._a-z0-9-]*|sse4a|xsave[a-z]*|osxsave|avx[a-z0-9-]*|fma|fma4|f16c|misalignsse|3dnow[a-z]*) \[bit')
if [ -n "$bad" ]; then
  echo "FAIL: FPU/SIMD features missing for -cpu $cpu:"
  echo "$bad"
  status=1
fi
[ "$status" = 0 ] && echo "OK: -cpu $cpu started without FPU/SIMD feature warnings"
exit $status
