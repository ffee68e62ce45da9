#!/usr/bin/env bash
# Builds the Debian i386 guest the boot tests, `make demo` and `make bench` use:
#   OUTDIR/vmlinuz     Debian bookworm's own 32-bit kernel (linux-image-686, non-PAE)
#   OUTDIR/initrd.img  gzip'ed cpio (newc) with busybox-static:i386 and an /init that
#                      mounts proc/sys/dev, prints `anykvm-guest-ready` on the console
#                      and runs a job-control shell on the console's tty (ttyS0 with
#                      console=ttyS0); `poweroff -f` powers the machine off (ACPI).
# Both packages come from the package registry with `apt-get download`; nothing is
# installed on the host. Idempotent: when OUTDIR holds the output of the same package
# versions and the same /init (OUTDIR/stamp), it does nothing.
#
# usage: scripts/fetch-debian-guest.sh [OUTDIR]   (default: build/guests/debian-686)
# The i386 architecture must be known to apt (as root this script adds it).
set -euo pipefail

root_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
out="${1:-$root_dir/build/guests/debian-686}"
mkdir -p "$out"
out="$(cd "$out" && pwd)"
log() { echo "fetch-debian-guest: $*" >&2; }
die() { log "error: $*"; exit 1; }

for tool in apt-get apt-cache dpkg dpkg-deb cpio gzip; do
  command -v "$tool" >/dev/null || die "'$tool' not found (this script needs Debian's apt/dpkg, cpio and gzip)"
done

# The /init of the initramfs. Part of the stamp: changing it rebuilds the initrd.
read -r -d '' init_script <<'EOF' || true
#!/bin/busybox sh
# anykvm test guest: Debian linux-image-686 + busybox-static, no modules.
/bin/busybox mkdir -p /proc /sys /dev /tmp /root /sbin /usr/bin /usr/sbin
/bin/busybox --install -s
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null || mdev -s
mkdir -p /dev/pts && mount -t devpts devpts /dev/pts
hostname anykvm-guest
export HOME=/root PATH=/bin:/sbin:/usr/bin:/usr/sbin PS1='# '
cd /root
echo "anykvm-guest-ready: $(uname -srm), $(grep -c ^processor /proc/cpuinfo) cpu(s)"
echo "Try: uname -a; cat /proc/cpuinfo; ls /; echo \$((6*7)). Leave with: poweroff -f"
# PID 1 must not exit: restart the shell when it ends. setsid + cttyhack give the
# shell the console's real tty as its controlling terminal, so Ctrl-C and job
# control work (plain /dev/console cannot be a controlling tty).
while true; do
  setsid cttyhack sh -l
  echo "shell exited; starting a new one (poweroff -f to stop the machine)"
  sleep 1
done
EOF

have_i386() { dpkg --print-foreign-architectures | grep -qx i386 || [ "$(dpkg --print-architecture)" = i386 ]; }
stamp_of() {  # stamp_of KERNEL_PKG KERNEL_VERSION BUSYBOX_VERSION
  printf 'kernel %s %s\nbusybox-static %s\ninit %s\n' "$1" "$2" "$3" \
    "$(printf '%s' "$init_script" | sha256sum | cut -d' ' -f1)"
}
outputs_present() { [ -s "$out/vmlinuz" ] && [ -s "$out/initrd.img" ] && [ -s "$out/stamp" ]; }

if ! have_i386; then
  if [ "$(id -u)" -eq 0 ]; then
    log "adding the i386 architecture to dpkg and updating apt's lists"
    dpkg --add-architecture i386
    apt-get update -qq || log "apt-get update reported errors (above); trying with the lists it got"
  elif outputs_present; then
    log "i386 is not a dpkg architecture here; keeping the guest already in $out"
    exit 0
  else
    log "apt does not know the i386 architecture. Run as root:"
    log "  dpkg --add-architecture i386 && apt-get update"
    exit 1
  fi
fi

# Resolve the metapackage to the real, versioned kernel package (linux-image-6.1.0-NN-686).
resolve() {
  kpkg="$(apt-cache depends linux-image-686:i386 2>/dev/null |
    sed -n 's/^ *Depends: \(linux-image-[0-9][^ :]*-686\)\(:i386\)\{0,1\}$/\1/p' | head -n1)"
  # One apt-cache run for both (each one reads all of apt's lists).
  local pol
  pol="$(apt-cache policy "${kpkg:-none}:i386" busybox-static:i386 2>/dev/null)"
  kver="$(printf '%s\n' "$pol" | sed -n "/^${kpkg:-none}:i386:/,/Candidate:/s/^ *Candidate: //p")"
  bver="$(printf '%s\n' "$pol" | sed -n '/^busybox-static:i386:/,/Candidate:/s/^ *Candidate: //p')"
}
resolve
if [ -z "$kpkg" ] || [ -z "$kver" ] || [ "$kver" = "(none)" ] || [ -z "$bver" ] || [ "$bver" = "(none)" ]; then
  if [ "$(id -u)" -eq 0 ]; then
    log "i386 packages not in apt's lists; running apt-get update"
    apt-get update -qq || log "apt-get update reported errors (above); trying with the lists it got"
    resolve
  fi
fi
if [ -z "$kpkg" ] || [ -z "$kver" ] || [ "$kver" = "(none)" ] || [ -z "$bver" ] || [ "$bver" = "(none)" ]; then
  if outputs_present; then
    log "cannot resolve the packages from apt's lists; keeping the guest already in $out"
    exit 0
  fi
  die "cannot resolve linux-image-686:i386 / busybox-static:i386 (got '${kpkg:-?}' '${kver:-?}' '${bver:-?}'); run as root: apt-get update"
fi

want="$(stamp_of "$kpkg" "$kver" "$bver")"
if outputs_present && [ "$(cat "$out/stamp")" = "$want" ]; then
  log "up to date: $out ($kpkg $kver, busybox-static $bver)"
  exit 0
fi

tmp="$(mktemp -d "${TMPDIR:-/tmp}/anykvm-guest.XXXXXX")"
trap 'rm -rf "$tmp"' EXIT
# apt's sandbox user (_apt) must be able to write the download directory.
chmod 0755 "$tmp"
mkdir "$tmp/debs"
chmod 0777 "$tmp/debs"
log "downloading $kpkg:i386 $kver and busybox-static:i386 $bver"
(cd "$tmp/debs" && apt-get download -q "$kpkg:i386=$kver" "busybox-static:i386=$bver") >&2 ||
  die "apt-get download failed"
kdeb="$(ls "$tmp"/debs/"$kpkg"_*_i386.deb)"
bdeb="$(ls "$tmp"/debs/busybox-static_*_i386.deb)"

# The kernel package is mostly modules; only /boot is needed (no modules are loaded).
mkdir "$tmp/kernel"
dpkg-deb --fsys-tarfile "$kdeb" | tar -x -C "$tmp/kernel" --wildcards './boot/*' ||
  die "cannot extract /boot from $kdeb"
vmlinuz="$(ls "$tmp"/kernel/boot/vmlinuz-*)"
config="$(ls "$tmp"/kernel/boot/config-*)"

# No modules in the initramfs: what the guest needs must be built in.
for opt in SERIAL_8250 SERIAL_8250_CONSOLE BLK_DEV_INITRD RD_GZIP DEVTMPFS PROC_FS SYSFS \
           UNIX98_PTYS BINFMT_ELF VT VGA_CONSOLE SERIO_I8042 KEYBOARD_ATKBD ACPI; do
  grep -qx "CONFIG_$opt=y" "$config" || die "$kpkg: CONFIG_$opt is not built in (=y); the guest needs it"
done
if grep -qx "CONFIG_X86_PAE=y" "$config"; then die "$kpkg is a PAE kernel; expected the non-PAE 686 flavour"; fi

mkdir "$tmp/busybox"
dpkg-deb -x "$bdeb" "$tmp/busybox"
[ -x "$tmp/busybox/bin/busybox" ] || die "busybox-static package has no /bin/busybox"

# Initramfs tree. Applet links are made by /init (busybox --install), so building
# never runs the i386 binary on the host.
ir="$tmp/initramfs"
mkdir -p "$ir"/{bin,sbin,usr/bin,usr/sbin,dev,proc,sys,tmp,root,etc}
cp "$tmp/busybox/bin/busybox" "$ir/bin/busybox"
ln -s busybox "$ir/bin/sh"
printf '%s\n' "$init_script" >"$ir/init"
chmod 0755 "$ir/init" "$ir/bin/busybox"
chmod 1777 "$ir/tmp"
printf 'root:x:0:0:root:/root:/bin/sh\n' >"$ir/etc/passwd"
printf 'root:x:0:\n' >"$ir/etc/group"
# The kernel opens /dev/console before running /init. Its built-in initramfs already
# has that node; add it here too when we may create device nodes.
if [ "$(id -u)" -eq 0 ]; then mknod -m 0600 "$ir/dev/console" c 5 1; fi

(cd "$ir" && find . -mindepth 1 | LC_ALL=C sort |
  cpio --quiet -o -H newc -R 0:0 --reproducible) | gzip -9 -n >"$tmp/initrd.img"

# Replace the outputs together; the stamp goes last so a half-written result is redone.
rm -f "$out/stamp"
cp "$vmlinuz" "$out/vmlinuz.new" && mv "$out/vmlinuz.new" "$out/vmlinuz"
cp "$tmp/initrd.img" "$out/initrd.img.new" && mv "$out/initrd.img.new" "$out/initrd.img"
cp "$config" "$out/config"
printf '%s\n' "$want" >"$out/stamp"
log "built $out: vmlinuz ($(basename "$vmlinuz")), initrd.img ($(du -k "$out/initrd.img" | cut -f1) KiB)"
