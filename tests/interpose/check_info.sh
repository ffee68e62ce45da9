#!/bin/sh
# Usage: check_info.sh ANYKVM CAPS_DEF
# `anykvm info` prints the API version (12) and every capability of caps.def
# by name; `--help` works for the command and its subcommands.
anykvm=$1
caps=$2
out=$(mktemp) || exit 1
trap 'rm -f "$out"' EXIT
"$anykvm" info > "$out" || { echo "anykvm info failed"; exit 1; }
failures=0
grep -q '^KVM API version: 12$' "$out" || { echo "no 'KVM API version: 12'"; failures=$((failures + 1)); }
grep -q '^anykvm [0-9]' "$out" || { echo "no version line"; failures=$((failures + 1)); }
grep -q 'vendor: ' "$out" || { echo "no CPUID vendor"; failures=$((failures + 1)); }
n=0
for cap in $(sed -n 's/^CAP(\([A-Z0-9_]*\),.*/KVM_CAP_\1/p' "$caps"); do
  n=$((n + 1))
  grep -q "^  $cap " "$out" || { echo "capability $cap missing from anykvm info"; failures=$((failures + 1)); }
done
[ "$n" -gt 0 ] || { echo "no capabilities read from $caps"; failures=$((failures + 1)); }
for args in "--help" "exec --help" "info --help"; do
  # shellcheck disable=SC2086
  "$anykvm" $args > /dev/null || { echo "anykvm $args failed"; failures=$((failures + 1)); }
done
"$anykvm" exec > /dev/null 2>&1 && { echo "anykvm exec without a command succeeded"; failures=$((failures + 1)); }
[ "$failures" -eq 0 ] && echo "anykvm info: API version and $n capabilities listed"
[ "$failures" -eq 0 ]
