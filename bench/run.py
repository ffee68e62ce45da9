#!/usr/bin/env python3
"""make bench: anykvm versus QEMU's TCG on the same guests, side by side.

For each guest, runs of `qemu-system-i386 -accel kvm` under `anykvm exec` and of
the same QEMU binary with `-accel tcg` alternate (the same command line, the same
-cpu model otherwise). Each run boots to a serial marker, runs the in-guest
workloads if the guest has them, then powers off / quits. Reports min and median
wall time to the marker, QEMU's CPU time, and the ratio anykvm/TCG, as markdown
and JSON under bench/results/.

Nothing here asserts a speed: numbers are measured in this run only.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SESSION = os.path.join(ROOT, "tests", "boot", "serial_session.py")


def guests(args):
    g = []
    floppy = os.path.join(ROOT, "..", "shared", "guests", "bootfd.img")
    if os.path.exists(floppy):
        g.append({
            "name": "kvm-kext floppy (Linux 3.19 i386)",
            "qemu": ["-m", "256M", "-fda", floppy, "-net", "none", "-nographic"],
            "steps": ["--expect", "Enjoy your new system!", "--expect", "# "],
            "end": ["--quit-at-end"],
        })
    kern = os.path.join(args.guest_dir, "vmlinuz")
    initrd = os.path.join(args.guest_dir, "initrd.img")
    if os.path.exists(kern) and os.path.exists(initrd):
        work = []
        for name, cmd in WORKLOADS:
            work += ["--send", "echo BENCH-%s-START; time %s; echo BENCH-%s-END" % (name, cmd, name),
                     "--expect", "BENCH-%s-END" % name]
        g.append({
            "name": "Debian linux-image-686 + busybox initramfs",
            "qemu": ["-m", "256M", "-nographic", "-no-reboot", "-kernel", kern, "-initrd", initrd,
                     "-append", "console=ttyS0 quiet"],
            "steps": ["--expect", "anykvm-guest-ready", "--expect", "# "] + (work if args.workloads else []),
            "end": ["--send", "poweroff -f", "--wait-exit"],
        })
    return g


# In-guest CPU-bound work (busybox applets), timed inside the guest with `time`.
WORKLOADS = [
    ("int-loop", "sh -c 'i=0; while [ $i -lt 200000 ]; do i=$((i+1)); done'"),
    ("mem-copy", "dd if=/dev/zero of=/dev/null bs=65536 count=4096"),
    ("fp-loop", "awk 'BEGIN{s=0; for(i=1;i<300000;i++) s+=sqrt(i)/i; print s}'"),
    ("gzip", "sh -c 'cat /bin/busybox /bin/busybox | gzip -6 | wc -c'"),
]


def run_once(guest, accel, args, log):
    qemu = [args.qemu, "-accel", accel, "-cpu", args.cpu] + guest["qemu"]
    if accel == "kvm":
        qemu = [args.anykvm, "exec", "--"] + qemu
    with tempfile.NamedTemporaryFile("r", suffix=".json") as t:
        cmd = [sys.executable, SESSION, "--timeout", str(args.timeout), "--timings", t.name,
               "--log", log] + guest["steps"] + guest["end"] + ["--"] + qemu
        t0 = time.monotonic()
        rc = subprocess.call(cmd, stderr=subprocess.DEVNULL)
        wall = time.monotonic() - t0
        try:
            timings = json.load(open(t.name))
        except Exception:
            timings = {}
    timings["ok"] = rc == 0
    timings["total"] = round(wall, 3)
    # In-guest `time` output: "real 0m 1.23s"
    timings["work"] = parse_work(log)
    return timings


def parse_work(log):
    out = {}
    try:
        text = open(log, errors="replace").read()
    except OSError:
        return out
    for name, _ in WORKLOADS:
        s = text.rfind("BENCH-%s-START" % name)
        e = text.find("BENCH-%s-END" % name, s + 1)
        if s < 0 or e < 0:
            continue
        for line in text[s:e].splitlines():
            line = line.strip()
            if line.startswith("real"):
                v = line.split()[1:]
                try:
                    mins = float(v[0].rstrip("m"))
                    secs = float(v[1].rstrip("s"))
                    out[name] = round(mins * 60 + secs, 3)
                except (IndexError, ValueError):
                    pass
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--qemu", default="qemu-system-i386")
    ap.add_argument("--cpu", default="qemu32")
    ap.add_argument("--anykvm", default=os.path.join(ROOT, "build", "src", "cli", "anykvm"))
    ap.add_argument("--guest-dir", default=os.path.join(ROOT, "build", "guests", "debian-686"))
    ap.add_argument("--timeout", type=float, default=900)
    ap.add_argument("--no-workloads", dest="workloads", action="store_false")
    ap.add_argument("--out", default=os.path.join(ROOT, "bench", "results"))
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    results = []
    for guest in guests(args):
        runs = {"kvm": [], "tcg": []}
        for i in range(args.runs):
            for accel in ("kvm", "tcg"):  # alternate
                log = os.path.join(args.out, "last-%s.log" % accel)
                r = run_once(guest, accel, args, log)
                runs[accel].append(r)
                print("%s [%s #%d] %s" % (guest["name"], accel, i + 1, r), flush=True)
        results.append({"guest": guest["name"], "runs": runs})
    write_reports(results, args)


def summarize(runs, key):
    vals = [r[key] for r in runs if r.get("ok") and key in r]
    if not vals:
        return None, None
    return min(vals), statistics.median(vals)


def write_reports(results, args):
    lines = ["# anykvm vs QEMU TCG", "",
             "Measured %s on this machine (`nproc`=%d), %d runs each, alternating; -cpu %s." %
             (time.strftime("%Y-%m-%d %H:%M"), os.cpu_count(), args.runs, args.cpu), "",
             "| guest | metric | anykvm min | anykvm median | TCG min | TCG median | ratio (median, anykvm/TCG) |",
             "|---|---|---|---|---|---|---|"]
    for res in results:
        kvm, tcg = res["runs"]["kvm"], res["runs"]["tcg"]
        metrics = []
        marker_keys = [k for k in (kvm + tcg)[0].keys() if k not in ("ok", "total", "work", "cpu", "exit")]
        for k in marker_keys[-1:]:
            metrics.append(("wall s to '%s'" % k.strip(), k))
        metrics.append(("QEMU CPU s (whole run)", "cpu"))
        for label, key in metrics:
            km, kmed = summarize(kvm, key)
            tm, tmed = summarize(tcg, key)
            ratio = "%.2f" % (kmed / tmed) if kmed and tmed else "n/a"
            fmt = lambda v: "%.2f" % v if v is not None else "failed"
            lines.append("| %s | %s | %s | %s | %s | %s | %s |" %
                         (res["guest"], label, fmt(km), fmt(kmed), fmt(tm), fmt(tmed), ratio))
        for name, _ in WORKLOADS:
            kv = [r["work"][name] for r in kvm if name in r.get("work", {})]
            tv = [r["work"][name] for r in tcg if name in r.get("work", {})]
            if kv or tv:
                kmed = statistics.median(kv) if kv else None
                tmed = statistics.median(tv) if tv else None
                ratio = "%.2f" % (kmed / tmed) if kmed and tmed else "n/a"
                fmt = lambda v: "%.2f" % v if v is not None else "failed"
                lines.append("| %s | in-guest %s s | %s | %s | %s | %s | %s |" %
                             (res["guest"], name, fmt(min(kv) if kv else None), fmt(kmed),
                              fmt(min(tv) if tv else None), fmt(tmed), ratio))
    md = "\n".join(lines) + "\n"
    open(os.path.join(args.out, "results.md"), "w").write(md)
    json.dump(results, open(os.path.join(args.out, "results.json"), "w"), indent=1)
    print(md)


if __name__ == "__main__":
    main()
