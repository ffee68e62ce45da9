#!/usr/bin/env python3
"""One boot test: builds the QEMU command line for a guest and drives it with
serial_session.py. Registered with ctest by tests/boot/CMakeLists.txt.

  boot_test.py floppy|debian686|vga --accel kvm --anykvm BUILD/src/cli/anykvm [--irqchip-off|--irqchip-split]
  boot_test.py debian686 --accel tcg        (the same guest on QEMU's TCG: checks
                                             the guest and this harness, not anykvm)

floppy     kvm-kext's own test floppy (SeaBIOS -> GRUB legacy -> Linux 3.19 -> BusyBox),
           its original command line; exits 77 (ctest: skipped) when the image is absent.
           The image is copied into the work directory first, so tests running at the
           same time do not fight over QEMU's image lock and the guest cannot alter it.
debian686  Debian's linux-image-686 + busybox-static initramfs (scripts/fetch-debian-guest.sh)
           with -kernel/-initrd/-append console=ttyS0; ends with `poweroff -f`, after which
           QEMU must exit with status 0.
vga        the same kernel with console=tty0 on QEMU's standard VGA and -display none: the
           boot text is read back from the VGA text buffer through QMP, a command is typed
           on the PS/2 keyboard and its output read from the screen.

Under anykvm the session runs with ANYKVM_TRACE=exits (default; --trace to change) into a
FIFO of which only the last lines are kept and printed when the boot fails.
"""
import argparse
import os
import shutil
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
SESSION = os.path.join(HERE, "serial_session.py")
SKIP = 77

# QEMU pauses the VM (it does not exit) on these, so fail at once instead of timing out.
FAIL_ON = ["KVM internal error", "kvm run failed", "KVM: entry failed", "Kernel panic"]


# A floating-point program (busybox awk computes in doubles) run in the guest must
# print what the same busybox binary prints when the host CPU runs it: the guest's
# busybox is static i386, so the host (x86-64 with 32-bit support) runs it natively.
FP_PROGRAM = ('BEGIN{s=0;t=1;for(i=1;i<=3000;i++){s+=1/(i*i);t=t*1.0001+i/(i+0.5)};'
              'printf "fp-%.17g-%.17g-%.6e\\n",s,t,s/t}')


def fp_steps(initrd, workdir):
    bb = os.path.join(workdir, "bin", "busybox")
    try:
        subprocess.run("zcat '%s' | cpio -id bin/busybox" % initrd, shell=True, cwd=workdir, check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        want = subprocess.run([bb, "awk", FP_PROGRAM], capture_output=True, text=True, check=True,
                              timeout=60).stdout.strip()
    except (OSError, subprocess.SubprocessError) as e:
        print("note: the host cannot run the guest's busybox (%s): no floating-point comparison" % e)
        return []
    if not want.startswith("fp-"):
        print("note: unexpected host output %r: no floating-point comparison" % want)
        return []
    print("floating-point check: the host prints %s" % want, flush=True)
    return ["--send", "busybox awk '%s'" % FP_PROGRAM, "--expect", want]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("guest", choices=["floppy", "debian686", "vga"])
    ap.add_argument("--accel", choices=["kvm", "tcg"], default="kvm")
    ap.add_argument("--anykvm", help="path of the anykvm command (with --accel kvm)")
    ap.add_argument("--irqchip-off", action="store_true", help="add -machine kernel-irqchip=off")
    ap.add_argument("--irqchip-split", action="store_true", help="add -machine kernel-irqchip=split")
    ap.add_argument("--smp", type=int, default=1,
                    help="-smp N (debian686: the guest must count N online CPUs)")
    ap.add_argument("--qemu", default="qemu-system-i386")
    ap.add_argument("--bootfd", default=os.path.join(HERE, "..", "..", "..", "shared", "guests", "bootfd.img"))
    ap.add_argument("--guest-dir", default=None, help="directory with vmlinuz and initrd.img")
    ap.add_argument("--workdir", default=None, help="where the console log and the trace tail go")
    ap.add_argument("--timeout", type=float, default=600)
    ap.add_argument("--trace", default="exits", help="ANYKVM_TRACE for the session ('none' for none)")
    args = ap.parse_args()

    if shutil.which(args.qemu) is None:
        print("FAILED: %s not found (scripts/install-deps.sh installs qemu-system-x86)" % args.qemu)
        return 1
    workdir = args.workdir or tempfile.mkdtemp(prefix="anykvm-boot.")
    os.makedirs(workdir, exist_ok=True)

    session = [sys.executable, SESSION, "--timeout", str(args.timeout), "--log", os.path.join(workdir, "console.log"),
               "--timings", os.path.join(workdir, "timings.json")]
    for pat in FAIL_ON:
        session += ["--fail-on", pat]

    if args.guest == "floppy":
        if not os.path.isfile(args.bootfd):
            print("SKIP: kvm-kext's test floppy %s is absent (set ANYKVM_BOOTFD to its path)" %
                  os.path.normpath(args.bootfd))
            return SKIP
        floppy = os.path.join(workdir, "bootfd.img")
        shutil.copyfile(args.bootfd, floppy)
        qemu = [args.qemu, "-m", "256M", "-fda", floppy, "-net", "none", "-nographic"]
        # Its BusyBox has only ash, cat, ls and mount: `uname -a` runs and answers
        # "applet not found"; the prompt coming back is what is checked.
        steps = ["--expect", "Enjoy your new system!", "--expect", "# ",
                 "--send", "uname -a", "--expect", "uname", "--expect", "# ",
                 "--send", "ls /", "--expect", "linuxrc",
                 "--send", "cat /proc/version", "--expect", "Linux version 3.19",
                 "--send", "echo $((6*7))", "--expect", "42", "--quit-at-end"]
    else:
        gdir = args.guest_dir
        if not gdir:
            print("FAILED: --guest-dir not given")
            return 1
        kernel, initrd = os.path.join(gdir, "vmlinuz"), os.path.join(gdir, "initrd.img")
        for f in (kernel, initrd):
            if not os.path.isfile(f):
                print("FAILED: %s is missing; scripts/fetch-debian-guest.sh %s makes it" % (f, gdir))
                return 1
        if args.guest == "debian686":
            qemu = [args.qemu, "-m", "256M", "-nographic", "-no-reboot", "-kernel", kernel, "-initrd", initrd,
                    "-append", "console=ttyS0"]
            steps = ["--expect", "anykvm-guest-ready", "--expect", "# ",
                     "--send", "uname -a", "--expect", "i686 GNU/Linux",
                     "--send", "ls /", "--expect", "proc",
                     "--send", "echo $((6*7))", "--expect", "42"]
            steps += fp_steps(initrd, workdir)
            if args.smp > 1:
                # Every CPU came up: the kernel lists each one it brought online.
                steps += ["--send", "echo cpus-$(cat /sys/devices/system/cpu/online)-end",
                          "--expect", "cpus-0-%d-end" % (args.smp - 1)]
            steps += ["--send", "poweroff -f", "--wait-exit"]
        else:
            # A QMP socket path must stay short (sun_path): keep it out of the build tree.
            sockdir = tempfile.mkdtemp(prefix="anykvm-qmp.")
            sock = os.path.join(sockdir, "qmp.sock")
            qemu = [args.qemu, "-m", "256M", "-vga", "std", "-display", "none", "-serial", "stdio", "-no-reboot",
                    "-kernel", kernel, "-initrd", initrd, "-append", "console=tty0",
                    "-qmp", "unix:%s,server=on,wait=off" % sock]
            session += ["--qmp", sock]
            steps = ["--expect-screen", "Run /init as init process", "--expect-screen", "anykvm-guest-ready",
                     "--type", "echo vga-$((6*7))-ok", "--expect-screen", "vga-42-ok",
                     "--type", "poweroff -f", "--wait-exit"]

    if args.smp > 1:
        qemu += ["-smp", str(args.smp)]
    if args.irqchip_off:
        qemu += ["-machine", "kernel-irqchip=off"]
    if args.irqchip_split:
        qemu += ["-machine", "kernel-irqchip=split"]
    if args.accel == "kvm":
        if not args.anykvm or not os.access(args.anykvm, os.X_OK):
            print("FAILED: anykvm command not found: %r" % args.anykvm)
            return 1
        qemu = [args.anykvm, "exec", "--"] + qemu + ["-enable-kvm"]
        if args.trace and args.trace != "none":
            session += ["--anykvm-trace", args.trace]
    else:
        qemu += ["-accel", "tcg"]

    cmd = session + steps + ["--"] + qemu
    mode = ", kernel-irqchip=off" if args.irqchip_off else ", kernel-irqchip=split" if args.irqchip_split else ""
    print("boot test %s (%s%s): %s" % (args.guest, args.accel, mode,
                                       " ".join(qemu)), flush=True)
    try:
        rc = subprocess.call(cmd)
    finally:
        if args.guest == "floppy":
            os.unlink(floppy)
        if args.guest == "vga":
            shutil.rmtree(sockdir, ignore_errors=True)
    print("console log: %s" % os.path.join(workdir, "console.log"))
    return rc


if __name__ == "__main__":
    sys.exit(main())
