#!/bin/sh
# Usage: dev_kvm_stat.sh ANYKVM
# Under `anykvm exec`, ordinary tools see /dev/kvm as a character device 10:232
# the user may read and write: test(1) (stat, access), stat(1) and ls(1)
# (coreutils use statx).
anykvm=$1
failures=0
check() {  # check NAME EXPECTED CMD...
  name=$1
  expected=$2
  shift 2
  got=$("$anykvm" exec -- "$@" 2>&1)
  if [ "$got" = "$expected" ]; then
    echo "ok   $name: $got"
  else
    echo "FAIL $name: got '$got', expected '$expected'"
    failures=$((failures + 1))
  fi
}
check "test -c -r -w" "yes" sh -c 'test -c /dev/kvm && test -r /dev/kvm && test -w /dev/kvm && echo yes'
check "stat(1)" "character special file 10:232 666" stat -c '%F %Hr:%Lr %a' /dev/kvm
check "ls -l" "crw-rw-rw-" sh -c 'ls -l /dev/kvm | cut -c1-10'
[ "$failures" -eq 0 ]
