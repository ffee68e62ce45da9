#!/bin/sh
# Stands for a shell-script wrapper like Debian's /usr/bin/qemu-system-i386:
# some shell logic, then exec of the real binary given as $1.
real=$1
shift
case "$real" in
  "") echo "wrapper.sh: no program" >&2; exit 2 ;;
esac
exec "$real" "$@"
