#!/usr/bin/env bash
# Installs what `make test` needs on Debian bookworm when run as root; otherwise
# prints the exact command to run. Idempotent: does nothing when all is present.
#   build and unit tests: cmake ninja g++ clang gtest/gmock benchmark
#   boot tests and demo:  python3, qemu-system-x86 (QEMU 7.2), and for
#                         scripts/fetch-debian-guest.sh: cpio, gzip and the i386 dpkg
#                         architecture (so apt can download linux-image-686:i386 and
#                         busybox-static:i386; nothing i386 is installed)
set -euo pipefail
pkgs=(cmake ninja-build g++ clang libgtest-dev libgmock-dev libbenchmark-dev python3 qemu-system-x86 cpio gzip)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
need_i386=0
if [ "$(dpkg --print-architecture)" != i386 ] && ! dpkg --print-foreign-architectures | grep -qx i386; then
  need_i386=1
fi
if [ ${#missing[@]} -eq 0 ] && [ $need_i386 -eq 0 ]; then exit 0; fi
if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null; then
  export DEBIAN_FRONTEND=noninteractive
  if [ $need_i386 -eq 1 ]; then
    echo "install-deps: adding the i386 architecture (for the Debian i386 boot-test guest)"
    dpkg --add-architecture i386
  fi
  # A mirror in mid-sync makes `update` fail for one list; the others are still good.
  apt-get update -qq || echo "install-deps: apt-get update reported errors; continuing" >&2
  if [ ${#missing[@]} -gt 0 ]; then
    echo "install-deps: installing ${missing[*]}"
    apt-get install -y -qq "${missing[@]}" >/dev/null
  fi
else
  if [ ${#missing[@]} -gt 0 ]; then
    echo "install-deps: missing packages: ${missing[*]}" >&2
    echo "run as root: apt-get install -y ${missing[*]}" >&2
  fi
  if [ $need_i386 -eq 1 ]; then
    echo "install-deps: the Debian boot tests need the i386 architecture; run as root:" >&2
    echo "  dpkg --add-architecture i386 && apt-get update" >&2
  fi
  # Missing packages stop the build; a missing i386 architecture only the boot tests.
  [ ${#missing[@]} -eq 0 ] || exit 1
fi
