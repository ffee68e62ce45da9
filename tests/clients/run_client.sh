#!/bin/sh
# Usage: run_client.sh CMD [ARGS...]
# Runs a KVM client with ANYKVM_TRACE=ioctl and passes when it exits 0 and its
# vCPU ioctls were served by anykvm (the host may also have a real /dev/kvm,
# which the client would otherwise use silently).
trace=$(mktemp) || exit 1
trap 'rm -f "$trace"' EXIT
ANYKVM_TRACE=ioctl "$@" 2>"$trace"
rc=$?
grep -v '^anykvm: ' "$trace" >&2
if [ "$rc" -ne 0 ]; then
  echo "run_client.sh: client exited with status $rc" >&2
  exit 1
fi
if ! grep -q '^anykvm: vCPU fd [0-9]* KVM_GET_REGS' "$trace"; then
  echo "run_client.sh: the client's vCPU was not served by anykvm" >&2
  exit 1
fi
echo "run_client.sh: passed, served by anykvm ($(grep -c '^anykvm: ' "$trace") traced ioctls)"
