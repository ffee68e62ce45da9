#!/bin/sh
# Usage: same_behaviour.sh ANYKVM MT_PROGRAM
# A program that never touches /dev/kvm behaves exactly as without the
# interposer: a shell, coreutils (ls, cat, sort) and a multithreaded program
# give the same output and exit status with and without `anykvm exec`.
anykvm=$1
mt=$2
work=$(mktemp -d) || exit 1
trap 'rm -rf "$work"' EXIT
printf 'pear\napple\nfig\n%s\n' "$(printf 'x%.0s' 1 2 3)" > "$work/input"
mkdir "$work/dir" && touch "$work/dir/a" "$work/dir/b c" && ln -s a "$work/dir/link"
failures=0

# compare NAME CMD...: runs CMD twice, plain and under anykvm exec.
compare() {
  name=$1
  shift
  "$@" > "$work/plain.out" 2> "$work/plain.err"
  plain_rc=$?
  "$anykvm" exec -- "$@" > "$work/kvm.out" 2> "$work/kvm.err"
  kvm_rc=$?
  if [ "$plain_rc" != "$kvm_rc" ]; then
    echo "FAIL $name: exit status $plain_rc plain, $kvm_rc under anykvm exec"
    failures=$((failures + 1))
  elif ! cmp -s "$work/plain.out" "$work/kvm.out" || ! cmp -s "$work/plain.err" "$work/kvm.err"; then
    echo "FAIL $name: output differs"
    diff "$work/plain.out" "$work/kvm.out"
    diff "$work/plain.err" "$work/kvm.err"
    failures=$((failures + 1))
  else
    echo "ok   $name (status $plain_rc)"
  fi
}

compare "sh script" sh -c 'x=0; for i in 1 2 3; do x=$((x + i)); done; echo "sum $x"; cd / && pwd; exit 3'
compare "sh pipes and redirections" sh -c "sort '$work/input' | uniq -c; cat < '$work/input' > '$work/copy'; cmp '$work/input' '$work/copy' && echo same"
compare "sh stat of /dev/kvm" sh -c 'test -c /dev/kvm && echo chardev; test -e /nonexistent || echo absent'
compare "ls" ls -la --time-style=+ "$work/dir"
compare "ls missing" ls "$work/missing"
compare "cat" cat "$work/input" "$work/input"
compare "sort" sort -r "$work/input"
compare "sort stdin" sh -c "sort < '$work/input'"
compare "multithreaded program" "$mt"

if [ "$failures" -ne 0 ]; then
  echo "$failures difference(s)"
  exit 1
fi
