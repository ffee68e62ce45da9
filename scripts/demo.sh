#!/usr/bin/env bash
# `make demo`: Debian bookworm's unmodified QEMU boots Debian's own 32-bit kernel
# (linux-image-686 + a busybox initramfs) with -enable-kvm, on the /dev/kvm that anykvm
# serves from user space, to an interactive shell on the serial console.
#
# usage: scripts/demo.sh            (after the build; BUILD=dir picks the build directory)
#   DEMO_ACCEL=tcg scripts/demo.sh  the same guest on QEMU's own TCG, for comparison
# Without a terminal on stdin it runs a short scripted session instead.
set -uo pipefail

root_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="${BUILD:-build}"
case "$build" in /*) ;; *) build="$root_dir/$build" ;; esac
anykvm="$build/src/cli/anykvm"
guest="$build/guests/debian-686"
qemu="${QEMU:-qemu-system-i386}"
accel="${DEMO_ACCEL:-kvm}"

say() { printf '%s\n' "$*"; }
die() { say "demo: $*" >&2; exit 1; }

if [ "$accel" = kvm ]; then
  [ -x "$anykvm" ] || die "$anykvm not found: build first (make build, or BUILD=<dir> for another build directory)"
fi
command -v "$qemu" >/dev/null || die "$qemu not found: scripts/install-deps.sh installs qemu-system-x86"

"$root_dir/scripts/fetch-debian-guest.sh" "$guest" || die "could not fetch the Debian guest (see above)"

qemu_cmd=("$qemu" -m 256M -nographic -no-reboot -kernel "$guest/vmlinuz" -initrd "$guest/initrd.img"
          -append "console=ttyS0")
if [ "$accel" = kvm ]; then
  cmd=("$anykvm" exec -- "${qemu_cmd[@]}" -enable-kvm)
  what="QEMU with -enable-kvm on anykvm's /dev/kvm (software x86 engine)"
else
  cmd=("${qemu_cmd[@]}" -accel tcg)
  what="QEMU's own TCG (no anykvm)"
fi

if [ ! -t 0 ]; then
  say "demo: stdin is not a terminal; running a scripted session on $what"
  # shellcheck disable=SC2016  # $((6*7)) is for the guest's shell
  exec python3 "$root_dir/tests/boot/serial_session.py" --timeout 600 \
    --fail-on "KVM internal error" --fail-on "kvm run failed" --fail-on "Kernel panic" \
    --expect anykvm-guest-ready --expect '# ' --send 'uname -a' --expect 'GNU/Linux' \
    --send 'echo $((6*7))' --expect 42 --send 'poweroff -f' --wait-exit --echo -- "${cmd[@]}"
fi

cat <<EOF

================================================================================
 anykvm demo: Debian's linux-image-686 booting in $what
   $(basename "$qemu") $(printf '%q ' "${qemu_cmd[@]:1}")
 The boot takes a while (every instruction is run by the software engine); the
 guest prints "anykvm-guest-ready" and then a "# " shell prompt on this terminal.

 Try:    uname -a    cat /proc/cpuinfo    cat /proc/interrupts    ls /
         echo \$((6*7))    dmesg | tail    top  (q quits)    Ctrl-C stops a command
 Leave:  poweroff -f          (the guest powers off and QEMU exits)
         or Ctrl-A then X     (QEMU quits at once)
 If the boot fails, QEMU's error (e.g. "KVM internal error" with the registers)
 shows here: then leave with Ctrl-A X. For a trace of the exits run:
   ANYKVM_TRACE=exits ANYKVM_TRACE_FILE=/tmp/anykvm-trace.txt make demo
================================================================================

EOF

start=$(date +%s)
"${cmd[@]}"
rc=$?
# QEMU leaves the terminal in raw mode when killed; put it back.
stty sane 2>/dev/null || true
elapsed=$(( $(date +%s) - start ))
if [ $rc -eq 0 ]; then
  say "demo: QEMU exited normally after ${elapsed}s."
else
  say "demo: QEMU exited with status $rc after ${elapsed}s (see its messages above)." >&2
fi
exit $rc
