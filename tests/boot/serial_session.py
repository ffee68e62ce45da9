#!/usr/bin/env python3
"""Boot a guest under QEMU, wait for markers on the serial console, type commands.

Used by the boot tests and by `make bench`. QEMU runs with -nographic (serial on
stdio); we talk to it through a pseudo-terminal so the guest sees a tty.

  serial_session.py --timeout 600 --expect 'Enjoy your new system!' --expect '# ' \
      --send 'echo $((6*7))' --expect '42' -- qemu-system-i386 ...

Exit status 0 when every step matched in order; 1 with the last serial lines on
failure. --log FILE keeps the whole console output. --poweroff CMD sends CMD at
the end and waits for QEMU to exit.
"""
import argparse
import json
import resource
import os
import pty
import re
import select
import signal
import subprocess
import sys
import time


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--timeout", type=float, default=600.0, help="seconds for the whole session")
    ap.add_argument("--expect", action="append", default=[], dest="steps_expect")
    ap.add_argument("--send", action="append", default=[], dest="steps_send")
    ap.add_argument("--log", default=None)
    ap.add_argument("--quit-at-end", action="store_true", help="send Ctrl-A x at the end")
    ap.add_argument("--wait-exit", action="store_true", help="wait for QEMU to exit by itself at the end")
    ap.add_argument("--timings", default=None, help="write marker times (seconds since start) as JSON")
    ap.add_argument("cmd", nargs=argparse.REMAINDER)
    # Keep the order of --expect/--send as given.
    steps = []
    argv = sys.argv[1:]
    i = 0
    while i < len(argv) and argv[i] != "--":
        if argv[i] in ("--expect", "--send") and i + 1 < len(argv):
            steps.append((argv[i][2:], argv[i + 1]))
            i += 2
        else:
            i += 1
    args = ap.parse_args()
    cmd = args.cmd[1:] if args.cmd and args.cmd[0] == "--" else args.cmd
    if not cmd:
        ap.error("no command")

    ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    master, slave = pty.openpty()
    start = time.monotonic()
    proc = subprocess.Popen(cmd, stdin=slave, stdout=slave, stderr=slave, close_fds=True,
                            start_new_session=True)
    os.close(slave)
    buf = b""
    log = open(args.log, "wb") if args.log else None
    timings = {}
    ok = True
    failed_step = None

    def read_some(deadline):
        nonlocal buf
        left = deadline - time.monotonic()
        if left <= 0:
            return False
        r, _, _ = select.select([master], [], [], min(left, 1.0))
        if r:
            try:
                data = os.read(master, 65536)
            except OSError:
                data = b""
            if not data:
                return False
            buf += data
            if log:
                log.write(data)
                log.flush()
        return True

    deadline = start + args.timeout
    pos = 0
    for kind, value in steps:
        if kind == "send":
            time.sleep(0.2)
            os.write(master, value.encode() + b"\r")
            continue
        pat = value.encode()
        while True:
            idx = buf.find(pat, pos)
            if idx >= 0:
                pos = idx + len(pat)
                timings[value] = round(time.monotonic() - start, 3)
                break
            if proc.poll() is not None and not read_some(time.monotonic() + 0.5):
                ok = False
                break
            if time.monotonic() > deadline:
                ok = False
                break
            read_some(deadline)
        if not ok:
            failed_step = value
            break

    if ok and args.quit_at_end:
        os.write(master, b"\x01x")
    if ok and (args.quit_at_end or args.wait_exit):
        end = time.monotonic() + 60
        while proc.poll() is None and time.monotonic() < end:
            read_some(end)
        if proc.poll() is None:
            ok = False
            failed_step = "(QEMU did not exit)"
        else:
            timings["exit"] = round(time.monotonic() - start, 3)
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
    ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    timings["cpu"] = round((ru1.ru_utime - ru0.ru_utime) + (ru1.ru_stime - ru0.ru_stime), 3)
    if args.timings:
        with open(args.timings, "w") as f:
            json.dump(timings, f)
    if not ok:
        tail = buf.decode("utf-8", "replace").splitlines()[-40:]
        sys.stderr.write("FAILED waiting for %r after %.1fs; last serial lines:\n" %
                         (failed_step, time.monotonic() - start))
        sys.stderr.write("\n".join(tail) + "\n")
        return 1
    sys.stderr.write("OK: %s\n" % timings)
    return 0


if __name__ == "__main__":
    sys.exit(main())
