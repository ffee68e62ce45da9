#!/usr/bin/env python3
"""Boot a guest under QEMU, wait for markers on the serial console or the VGA text
screen, type commands.

Used by the boot tests (boot_test.py), scripts/demo.sh and `make bench`. QEMU runs
with the serial port on stdio (-nographic or -serial stdio); we talk to it through
a pseudo-terminal so the guest sees a tty.

  serial_session.py --timeout 600 --expect 'Enjoy your new system!' --expect '# ' \\
      --send 'echo $((6*7))' --expect '42' -- qemu-system-i386 ...

Steps run in the order given:
  --expect TEXT          wait for TEXT on the serial console (after the previous match)
  --send TEXT            type TEXT and Enter on the serial console
  --expect-screen TEXT   wait for TEXT in the VGA text buffer (needs --qmp)
  --type TEXT            type TEXT and Enter on the PS/2 keyboard (needs --qmp)

Other options:
  --qmp SOCKET           QMP socket the QEMU command line opens with
                         -qmp unix:SOCKET,server=on,wait=off; the VGA text buffer is read
                         with QMP `pmemsave` (0xb8000, 32 KiB: vgacon scrolls in it)
  --fail-on TEXT         fail at once when TEXT appears on the serial console
                         (e.g. 'KVM internal error': QEMU then pauses instead of exiting)
  --anykvm-trace SPEC    run the command with ANYKVM_TRACE=SPEC, its trace file being a FIFO
                         we read; only the last lines are kept (bounded memory and disk)
                         and printed when the session fails
  --trace-tail N         how many trace lines to print on failure (default 60)
  --log FILE             keep the whole console output (and FILE.trace-tail on failure)
  --echo                 copy the console output to stdout as it comes
  --quit-at-end          send Ctrl-A x at the end and wait for QEMU to exit
  --wait-exit            wait for QEMU to exit by itself at the end (e.g. after
                         `poweroff -f`); its exit status must be 0
  --timings FILE         write marker times (seconds since start) as JSON

Exit status 0 when every step matched in order; 1 with the last serial lines (and
the trace tail) on failure.
"""
import argparse
import collections
import json
import os
import pty
import re
import resource
import select
import signal
import socket
import subprocess
import sys
import tempfile
import time

VGA_TEXT_BASE = 0xB8000
VGA_TEXT_SIZE = 0x8000  # colour text window b8000-bffff; Linux's vgacon scrolls inside it
VGA_COLUMNS = 80


class StepAction(argparse.Action):
    """Collects --expect/--send/--expect-screen/--type in command-line order."""

    def __call__(self, parser, namespace, values, option_string=None):
        steps = getattr(namespace, "steps", None) or []
        steps.append((option_string[2:], values))
        namespace.steps = steps


class TraceFifo:
    """The anykvm trace written into a FIFO, of which we keep only the last lines."""

    def __init__(self, keep):
        self.dir = tempfile.mkdtemp(prefix="anykvm-trace.")
        self.path = os.path.join(self.dir, "trace.fifo")
        os.mkfifo(self.path, 0o600)
        self.rfd = os.open(self.path, os.O_RDONLY | os.O_NONBLOCK)
        # Our own writer keeps the FIFO from reading as end-of-file before the traced
        # process opens it (and so select() from spinning); the tracer's fopen() does
        # not block either, since a reader exists.
        self.wfd = os.open(self.path, os.O_WRONLY | os.O_NONBLOCK)
        self.lines = collections.deque(maxlen=keep)
        self.partial = b""
        self.total = 0

    def fileno(self):
        return self.rfd

    def pump(self):
        """Reads what is there; returns False at end-of-file."""
        try:
            data = os.read(self.rfd, 1 << 16)
        except BlockingIOError:
            return True
        if not data:
            return False
        parts = (self.partial + data).split(b"\n")
        self.partial = parts.pop()
        self.total += len(parts)
        self.lines.extend(parts)
        return True

    def finish(self):
        """After the traced process is gone: drain what it flushed on exit."""
        if self.wfd is not None:
            os.close(self.wfd)
            self.wfd = None
        end = time.monotonic() + 5
        while time.monotonic() < end:
            r, _, _ = select.select([self.rfd], [], [], 0.5)
            if not r or not self.pump():
                break
        if self.partial:
            self.lines.append(self.partial)
            self.partial = b""

    def close(self):
        for fd in (self.rfd, self.wfd):
            if fd is not None:
                os.close(fd)
        self.rfd = self.wfd = None
        try:
            os.unlink(self.path)
            os.rmdir(self.dir)
        except OSError:
            pass


class Qmp:
    """Minimal QMP client: one command at a time, events skipped."""

    def __init__(self, path):
        self.path = path
        self.sock = None
        self.rbuf = b""

    def connect(self, deadline):
        while self.sock is None:
            try:
                s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                s.connect(self.path)
                self.sock = s
            except OSError:
                s.close()
                if time.monotonic() > deadline:
                    raise RuntimeError("cannot connect to QMP socket %s" % self.path)
                time.sleep(0.2)
        self._reply(deadline, greeting=True)
        self.command("qmp_capabilities", deadline=deadline)

    def _line(self, deadline):
        while b"\n" not in self.rbuf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise RuntimeError("QMP: no answer in time")
            r, _, _ = select.select([self.sock], [], [], min(left, 1.0))
            if r:
                data = self.sock.recv(65536)
                if not data:
                    raise RuntimeError("QMP: connection closed (QEMU exited?)")
                self.rbuf += data
        line, self.rbuf = self.rbuf.split(b"\n", 1)
        return json.loads(line)

    def _reply(self, deadline, greeting=False):
        while True:
            msg = self._line(deadline)
            if greeting and "QMP" in msg:
                return msg
            if "return" in msg:
                return msg["return"]
            if "error" in msg:
                raise RuntimeError("QMP error: %s" % msg["error"].get("desc", msg["error"]))

    def command(self, name, deadline=None, **arguments):
        deadline = deadline or time.monotonic() + 30
        msg = {"execute": name}
        if arguments:
            msg["arguments"] = arguments
        self.sock.sendall(json.dumps(msg).encode() + b"\n")
        return self._reply(deadline)

    def close(self):
        if self.sock:
            self.sock.close()
            self.sock = None


# Characters -> QMP qcodes (US layout) for --type.
_QCODE = {" ": "spc", "-": "minus", "=": "equal", "/": "slash", ".": "dot", ",": "comma", ";": "semicolon",
          "'": "apostrophe", "\\": "backslash", "[": "bracket_left", "]": "bracket_right", "`": "grave_accent",
          "\n": "ret"}
_SHIFTED = {"!": "1", "@": "2", "#": "3", "$": "4", "%": "5", "^": "6", "&": "7", "*": "8", "(": "9", ")": "0",
            "_": "minus", "+": "equal", "?": "slash", ">": "dot", "<": "comma", ":": "semicolon", '"': "apostrophe",
            "|": "backslash", "{": "bracket_left", "}": "bracket_right", "~": "grave_accent"}


def keys_for(ch):
    if ch.isascii() and (ch.isdigit() or ch.islower()):
        return [ch]
    if ch.isascii() and ch.isupper():
        return ["shift", ch.lower()]
    if ch in _QCODE:
        return [_QCODE[ch]]
    if ch in _SHIFTED:
        return ["shift", _SHIFTED[ch]]
    raise ValueError("cannot type %r" % ch)


def vga_text(raw):
    """The character bytes (even offsets) of a text-mode buffer, as 80-column lines."""
    chars = bytes(b if 32 <= b < 127 else 32 for b in raw[0::2])
    lines = [chars[i:i + VGA_COLUMNS].decode("ascii").rstrip() for i in range(0, len(chars), VGA_COLUMNS)]
    return lines


def tidy(buf):
    """Console bytes -> lines: CR LF / CR CR LF as one break, escape sequences dropped."""
    text = buf.decode("utf-8", "replace")
    text = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", text)
    text = re.sub(r"\r+\n", "\n", text).replace("\r", "\n")
    return text.splitlines()


def main():
    ap = argparse.ArgumentParser(description="Drive QEMU's serial console (and VGA screen) through steps.")
    ap.add_argument("--timeout", type=float, default=600.0, help="seconds for the whole session")
    for opt in ("--expect", "--send", "--expect-screen", "--type"):
        ap.add_argument(opt, action=StepAction, dest="steps", metavar="TEXT")
    ap.add_argument("--fail-on", action="append", default=[], metavar="TEXT")
    ap.add_argument("--qmp", default=None, metavar="SOCKET")
    ap.add_argument("--anykvm-trace", default=None, metavar="SPEC")
    ap.add_argument("--trace-tail", type=int, default=60)
    ap.add_argument("--log", default=None)
    ap.add_argument("--echo", action="store_true", help="copy the console to stdout")
    ap.add_argument("--quit-at-end", action="store_true", help="send Ctrl-A x at the end")
    ap.add_argument("--wait-exit", action="store_true", help="wait for QEMU to exit by itself at the end")
    ap.add_argument("--timings", default=None, help="write marker times (seconds since start) as JSON")
    ap.add_argument("cmd", nargs=argparse.REMAINDER)
    args = ap.parse_args()
    steps = getattr(args, "steps", None) or []
    cmd = args.cmd[1:] if args.cmd and args.cmd[0] == "--" else args.cmd
    if not cmd:
        ap.error("no command")
    if any(k in ("expect-screen", "type") for k, _ in steps) and not args.qmp:
        ap.error("--expect-screen and --type need --qmp")

    env = dict(os.environ)
    trace = None
    if args.anykvm_trace:
        trace = TraceFifo(keep=max(args.trace_tail, 400))
        env["ANYKVM_TRACE"] = args.anykvm_trace
        env["ANYKVM_TRACE_FILE"] = trace.path

    ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    master, slave = pty.openpty()
    start = time.monotonic()
    proc = subprocess.Popen(cmd, stdin=slave, stdout=slave, stderr=slave, close_fds=True,
                            start_new_session=True, env=env)
    os.close(slave)
    buf = b""
    log = open(args.log, "wb") if args.log else None
    timings = {}
    failure = None  # why the session failed, for the report
    fail_scan = 0
    qmp = Qmp(args.qmp) if args.qmp else None
    screen = []  # last VGA text lines read
    screen_seen = ""  # every text seen on the screen, newline-joined snapshots

    def read_some(deadline):
        """Waits up to 1 s for console (and trace) data; False at console end-of-file."""
        nonlocal buf, fail_scan, failure
        left = deadline - time.monotonic()
        if left <= 0:
            return False
        fds = [master] + ([trace] if trace and trace.rfd is not None else [])
        r, _, _ = select.select(fds, [], [], min(left, 1.0))
        if trace and trace in r:
            trace.pump()
        if master in r:
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
            if args.echo:
                sys.stdout.buffer.write(data)
                sys.stdout.buffer.flush()
            for pat in args.fail_on:
                if buf.find(pat.encode(), max(0, fail_scan - len(pat))) >= 0 and failure is None:
                    failure = "%r appeared on the console" % pat
            fail_scan = len(buf)
        return True

    def read_screen(deadline):
        nonlocal screen, screen_seen
        if qmp.sock is None:
            qmp.connect(deadline)
        fd, path = tempfile.mkstemp(prefix="anykvm-vga.", suffix=".bin")
        os.close(fd)
        try:
            os.chmod(path, 0o666)
            qmp.command("pmemsave", val=VGA_TEXT_BASE, size=VGA_TEXT_SIZE, filename=path)
            with open(path, "rb") as f:
                raw = f.read()
        finally:
            os.unlink(path)
        screen = vga_text(raw)
        screen_seen += "\n" + "\n".join(screen) + "\n" + "".join(l.ljust(VGA_COLUMNS) for l in screen)

    deadline = start + args.timeout
    pos = 0
    try:
        for kind, value in steps:
            if failure:
                break
            if kind == "send":
                time.sleep(0.2)
                os.write(master, value.encode() + b"\r")
                continue
            if kind == "type":
                if qmp.sock is None:
                    qmp.connect(deadline)
                for ch in value + "\n":
                    qmp.command("send-key", keys=[{"type": "qcode", "data": k} for k in keys_for(ch)])
                    read_some(time.monotonic() + 0.03)
                continue
            if kind == "expect-screen":
                while True:
                    if failure:
                        break
                    read_screen(deadline)
                    if value in screen_seen:
                        timings["screen:" + value] = round(time.monotonic() - start, 3)
                        break
                    if proc.poll() is not None:
                        failure = "QEMU exited with status %d while waiting for %r on the screen" % (
                            proc.returncode, value)
                        break
                    if time.monotonic() > deadline:
                        failure = "timed out waiting for %r on the VGA screen" % value
                        break
                    # Keep the console drained while polling the screen.
                    end = time.monotonic() + 1.0
                    while time.monotonic() < end and read_some(end):
                        pass
                continue
            pat = value.encode()
            while True:
                idx = buf.find(pat, pos)
                if idx >= 0:
                    pos = idx + len(pat)
                    timings[value] = round(time.monotonic() - start, 3)
                    break
                if failure:
                    break
                if proc.poll() is not None and not read_some(time.monotonic() + 0.5):
                    failure = "QEMU exited with status %d while waiting for %r" % (proc.returncode, value)
                    break
                if time.monotonic() > deadline:
                    failure = "timed out waiting for %r" % value
                    break
                read_some(deadline)
    except (RuntimeError, OSError, ValueError) as e:
        failure = "%s (during the steps)" % e

    if not failure and args.quit_at_end:
        os.write(master, b"\x01x")
    if not failure and (args.quit_at_end or args.wait_exit):
        end = time.monotonic() + 60
        while proc.poll() is None and time.monotonic() < end:
            read_some(end)
        if proc.poll() is None:
            failure = "QEMU did not exit within 60 s at the end"
        else:
            timings["exit"] = round(time.monotonic() - start, 3)
            if args.wait_exit and proc.returncode != 0:
                failure = "QEMU exited with status %d at the end" % proc.returncode
    if qmp:
        qmp.close()
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        end = time.monotonic() + 10
        while proc.poll() is None and time.monotonic() < end:
            read_some(end)
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    for _ in range(50):  # what QEMU printed while exiting (bounded: a grandchild may hold the pty)
        if not read_some(time.monotonic() + 0.2):
            break
    if trace:
        trace.finish()
    ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    timings["cpu"] = round((ru1.ru_utime - ru0.ru_utime) + (ru1.ru_stime - ru0.ru_stime), 3)
    if args.timings:
        with open(args.timings, "w") as f:
            json.dump(timings, f)
    if log:
        log.close()

    if failure:
        out = sys.stderr
        out.write("FAILED after %.1fs: %s\n" % (time.monotonic() - start, failure))
        out.write("command: %s\n" % " ".join(cmd))
        out.write("---- last serial console lines ----\n")
        out.write("\n".join(tidy(buf)[-40:]) + "\n")
        if qmp is not None:
            out.write("---- VGA text buffer (non-blank lines, buffer order) ----\n")
            out.write("\n".join([l for l in screen if l.strip()][-30:]) + "\n")
        if trace:
            lines = [l.decode("utf-8", "replace") for l in trace.lines]
            out.write("---- last %d of %d anykvm trace lines (ANYKVM_TRACE=%s) ----\n" %
                      (min(len(lines), args.trace_tail), trace.total, args.anykvm_trace))
            out.write("\n".join(lines[-args.trace_tail:]) + "\n")
            if args.log:
                with open(args.log + ".trace-tail", "w") as f:
                    f.write("\n".join(lines) + "\n")
    else:
        sys.stderr.write("OK: %s\n" % timings)
    if trace:
        trace.close()
    return 1 if failure else 0


if __name__ == "__main__":
    sys.exit(main())
