#!/bin/sh
# Usage: check_ioctl_doc.sh ANYKVM DOC
# Fails when the checked-in docs/ioctl-coverage.md is not what
# `anykvm ioctl-doc` generates from src/kvmapi/ioctls.def now.
# Regenerate with: anykvm ioctl-doc > docs/ioctl-coverage.md
if "$1" ioctl-doc | diff -u "$2" -; then
  echo "$2 is up to date"
else
  echo "$2 is stale: regenerate it with '$1 ioctl-doc > $2'"
  exit 1
fi
