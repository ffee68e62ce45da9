#!/usr/bin/env python3
"""make bench: anykvm versus QEMU's TCG on the same guests, side by side.

Three parts, all with the same QEMU binary and the same command line except the
accelerator (`-accel kvm` under `anykvm exec`, or `-accel tcg`), -cpu given
explicitly (qemu32 by default):

  boot      each guest boots to its serial marker and shell prompt, then powers off
            (floppy: Ctrl-A x; Debian: `poweroff -f`). Runs alternate anykvm/TCG
            (the first of each round alternates too), --runs of each.
  work      the Debian guest boots, then runs CPU-bound busybox workloads, each timed
            by the guest (`time`) and by the host (serial markers around it); their
            printed results must be equal under both accelerators.
  profile   one anykvm boot of the Debian guest under `perf record -e cpu-clock`,
            top symbols grouped by engine part.

Every anykvm run has ANYKVM_STATS set: the engine prints executed guest
instructions, blocks and exits per vCPU at exit (the counters always run; the
variable only prints them), from which the engine's rate is computed.

Writes bench/results/results.md and results.json (logs and perf data under
bench/results/logs/, not kept in git). Nothing here asserts a speed: the numbers
are those of this run on this machine; /proc/loadavg is recorded before and after.
"""
import argparse
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SESSION = os.path.join(ROOT, "tests", "boot", "serial_session.py")

# In-guest workloads: (name, what it measures, shell command; {n} is the size).
# Sizes make each take about 1-5 s under TCG on a 2-core x86-64 (2026); --scale
# multiplies them. Each command prints a result line that must be identical under
# both accelerators (the `time` applet's report goes to stderr).
SETUP = ("dd if=/dev/zero of=/tmp/m bs=1M count=32 2>/dev/null; "
         "(cat /bin/busybox; seq 1 150000) >/tmp/g")
WORKLOADS = [
    ("int-loop", "busybox sh arithmetic loop (integer ALU, branches, the shell interpreter)", 40000,
     "time sh -c 'i=0;s=0;while [ $i -lt {n} ];do s=$(((s*31+i)%1000003));i=$((i+1));done;echo int $s'", ""),
    ("mem-copy", "cp of a 32 MiB tmpfs file, N times (kernel rep movs, page allocation)", 10,
     "time sh -c 'k=0;while [ $k -lt {n} ];do cp /tmp/m /tmp/m2;k=$((k+1));done'", "echo mem $(md5sum </tmp/m2)"),
    ("fp-loop", "busybox awk double-precision loop (x87 arithmetic, divisions)", 40000,
     "time awk 'BEGIN{{s=0;x=1;for(i=1;i<={n};i++){{s+=1/(i*i);x=x*0.999999+1.5/i}};"
     "printf \"fp %.15g %.15g\\n\",s,x}}'", ""),
    ("gzip", "busybox gzip -6 of 3 MB (busybox binary + seq text); then gunzip, md5sum compared", 1,
     "time gzip -6 </tmp/g >/tmp/g.gz", "echo gz $(wc -c </tmp/g.gz) $(gunzip </tmp/g.gz|md5sum) $(md5sum </tmp/g)"),
]


def marker(s):
    """The shell command text for `echo S` that does not itself contain S (the tty echoes our input)."""
    return s[:-1] + '""' + s[-1]


def floppy_guest(args):
    if not os.path.exists(args.floppy):
        return None
    return {
        "key": "floppy",
        "name": "kvm-kext floppy (Linux 3.19 i386, BusyBox)",
        "qemu": ["-m", args.mem, "-fda", args.floppy, "-net", "none", "-nographic"],
        "boot": ["--expect", "Enjoy your new system!", "--expect", "# "],
        "marker": "Enjoy your new system!",
        "end": ["--quit-at-end"],
    }


def debian_guest(args):
    kern = os.path.join(args.guest_dir, "vmlinuz")
    initrd = os.path.join(args.guest_dir, "initrd.img")
    if not (os.path.exists(kern) and os.path.exists(initrd)):
        return None
    return {
        "key": "debian",
        "name": "Debian linux-image-686 (6.1) + busybox-static initramfs",
        "qemu": ["-m", args.mem, "-nographic", "-no-reboot", "-kernel", kern, "-initrd", initrd,
                 "-append", "console=ttyS0 quiet"],
        "boot": ["--expect", "anykvm-guest-ready", "--expect", "# "],
        "marker": "anykvm-guest-ready",
        "end": ["--send", "poweroff -f", "--wait-exit"],
    }


def work_steps(args):
    steps = ["--send", SETUP + "; echo " + marker("SETUP-DONE"), "--expect", "SETUP-DONE"]
    for name, _, n, cmd, check in WORKLOADS:
        size = max(1, int(round(n * args.scale))) if name != "gzip" else 1
        line = "echo %s; %s; echo %s; %s%secho %s" % (
            marker("BENCH-%s-START" % name), cmd.format(n=size), marker("BENCH-%s-END" % name),
            check, "; " if check else "", marker("BENCH-%s-DONE" % name))
        steps += ["--send", line, "--expect", "BENCH-%s-START" % name, "--expect", "BENCH-%s-END" % name,
                  "--expect", "BENCH-%s-DONE" % name]
    return steps


def qemu_cmd(guest, accel, args):
    q = [args.qemu, "-accel", accel, "-cpu", args.cpu] + guest["qemu"]
    return [args.anykvm, "exec", "--"] + q if accel == "kvm" else q


def run_once(guest, accel, kind, args, tag, perf_data=None):
    """One QEMU session; returns a dict of what was measured."""
    log = os.path.join(args.logs, "%s.log" % tag)
    steps = guest["boot"] + (work_steps(args) if kind == "work" else []) + guest["end"]
    cmd = qemu_cmd(guest, accel, args)
    env = dict(os.environ)
    stats_file = None
    if accel == "kvm":
        stats_file = os.path.join(args.logs, "%s.stats" % tag)
        if os.path.exists(stats_file):
            os.unlink(stats_file)
        env["ANYKVM_STATS"] = stats_file
    if perf_data:
        env["ANYKVM_JIT_PERFMAP"] = "1"  # perf names compiled blocks by guest-physical address
        cmd = [args.perf, "record", "-q", "-e", "cpu-clock", "-F", str(args.perf_freq), "-o", perf_data, "--"] + cmd
    fd, tpath = tempfile.mkstemp(prefix="bench-timings.", suffix=".json")
    os.close(fd)
    try:
        scmd = [sys.executable, SESSION, "--timeout", str(args.timeout), "--timings", tpath, "--log", log,
                "--fail-on", "KVM internal error"] + steps + ["--"] + cmd
        t0 = time.monotonic()
        p = subprocess.run(scmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                           errors="replace")
        wall = time.monotonic() - t0
        try:
            with open(tpath) as f:
                timings = json.load(f)
        except (OSError, ValueError):
            timings = {}
    finally:
        os.unlink(tpath)
    r = {"accel": "anykvm" if accel == "kvm" else "tcg", "kind": kind, "ok": p.returncode == 0,
         "session_s": round(wall, 3), "log": os.path.relpath(log, ROOT)}
    if p.returncode != 0:
        r["error"] = p.stderr.strip().splitlines()[:3]
    r["marker_s"] = timings.get(guest["marker"])
    r["shell_s"] = timings.get("# ")
    r["exit_s"] = timings.get("exit")
    r["cpu_s"] = timings.get("cpu")
    if kind == "work":
        r["work"] = parse_work(log, timings)
    if stats_file:
        r["stats"] = parse_stats(stats_file)
    return r


def parse_work(log, timings):
    out = {}
    try:
        text = open(log, errors="replace").read().replace("\r", "")
    except OSError:
        return out
    for name, _, _, _, _ in WORKLOADS:
        s = text.rfind("BENCH-%s-START\n" % name)
        e = text.find("BENCH-%s-DONE\n" % name, s + 1)
        if s < 0 or e < 0:
            continue
        w = {"result": None, "guest_s": None}
        t0, t1 = timings.get("BENCH-%s-START" % name), timings.get("BENCH-%s-END" % name)
        if t0 is not None and t1 is not None:
            w["host_s"] = round(t1 - t0, 3)
        for line in text[s:e].splitlines()[1:]:
            line = line.strip()
            m = re.match(r"real\s+(\d+)m\s*([\d.]+)s", line)
            if m:
                w["guest_s"] = round(int(m.group(1)) * 60 + float(m.group(2)), 3)
            elif line.split(" ")[0] in ("int", "mem", "fp", "gz"):
                w["result"] = re.sub(r"\s+", " ", line)
        out[name] = w
    return out


def parse_stats(path):
    """The engine's ANYKVM_STATS lines (src/cpu/soft/trace.cpp)."""
    res = {"vcpus": []}
    try:
        lines = open(path).read().splitlines()
    except OSError:
        return None
    for line in lines:
        if not line.startswith("anykvm-stats: "):
            continue
        f = line.split()
        kv = dict(x.split("=", 1) for x in f[2:] if "=" in x)
        if f[1] == "process":
            res["process_cpu_s"] = float(kv.get("cpu_s", 0))
            res["process_wall_s"] = float(kv.get("wall_s", 0))
        else:
            res["vcpus"].append({k: (float(v) if "." in v else int(v)) for k, v in kv.items()})
    v = res["vcpus"]
    if v:
        res["insns"] = sum(x.get("insns", 0) for x in v)
        res["blocks"] = sum(x.get("blocks", 0) for x in v)
        res["exits"] = sum(x.get("exits", 0) for x in v)
        cpu = sum(max(0.0, x.get("thread_cpu_s", 0)) for x in v)
        res["vcpu_cpu_s"] = round(cpu, 3)
        res["insns_per_vcpu_cpu_s"] = round(res["insns"] / cpu) if cpu > 0 else None
    return res


# ---- perf ----

GROUPS = [  # first match wins; (group, regex on "[k] dso symbol")
    ("generated code (compiled blocks, cpu/soft/jit)", r"^\[JIT\]"),
    ("QEMU itself (device models, main loop, its libraries)", r"^qemu-system|libglib|libpixman|libz\b"),
    ("host kernel (syscalls, scheduling, page faults)", r"^\[k\]|^\[unknown\]|\[vdso\]"),
    ("exits: KVM API, machine loop, in-kernel devices", r"kvmapi|interpose|machine::|devices::|ioctl|ppoll|"
                                                        r"futex|clock_gettime|getpid|pthread_"),
    ("C++ exceptions (guest faults / StopInsn unwinding)", r"libgcc_s|_Unwind|__cxa_|libstdc\+\+"),
    ("decode and compile (building blocks)", r"decode|Decoder|build_block|DispatchTable|disasm|jit::Asm|Compiler|"
                                             r"jit::compile|std::deque"),
    ("engine loop & block lookup (SoftVcpu::run with inlined lookup/run_block, block hash, validation memcmp)",
     r"SoftVcpu::run|lookup_block|block_current|_Hashtable|Block|debug_active|engine_|memcmp|jit::"),
    ("memory (mmu_*, TLB, page walk, fetch; not what is inlined in handlers)",
     r"mmu_|Tlb|tlb_|memslot|fetch_code|Memory|resolve|split_"),
    ("execute (instruction handlers ex::*, flags, FPU)", r"soft::ex::|eval_cond|lazy_|flags|fpu|x87|soft::"),
    ("other (libc, loader, python)", r"."),
]


def perf_summary(data, args):
    try:
        out = subprocess.run([args.perf, "report", "-i", data, "--stdio", "--no-children", "--sort", "dso,sym",
                              "--percent-limit", "0.01"], capture_output=True, text=True, errors="replace",
                             timeout=600).stdout
    except (OSError, subprocess.TimeoutExpired) as e:
        return {"error": str(e)}
    rows = []
    samples = None
    for line in out.splitlines():
        m = re.match(r"#\s*Samples:\s*(\S+)", line)
        if m and samples is None:
            samples = m.group(1)
        m = re.match(r"\s*([\d.]+)%\s+(\[JIT\] tid \d+|\S+)\s+\[(.)\]\s+(.*)$", line)
        if m:
            dso = "[JIT]" if m.group(2).startswith("[JIT]") else m.group(2)
            rows.append((float(m.group(1)), dso, m.group(3), m.group(4).strip()))
    groups = {g: 0.0 for g, _ in GROUPS}
    for pct, dso, kind, sym in rows:
        key = ("[k] " if kind == "k" else "") + dso + " " + sym
        for g, rx in GROUPS:
            if re.search(rx, key):
                groups[g] += pct
                break
    return {"samples": samples, "groups": {g: round(v, 1) for g, v in groups.items()},
            "top": [{"pct": p, "dso": d, "sym": s[:120]} for p, d, _, s in rows[:args.perf_top]]}


# ---- reports ----

def loadavg():
    try:
        return open("/proc/loadavg").read().split()[:3]
    except OSError:
        return None


def mm(vals):
    vals = [v for v in vals if v is not None]
    if not vals:
        return None, None
    return min(vals), statistics.median(vals)


def f2(v):
    return "%.2f" % v if v is not None else "—"


def ratio(a, b):
    return "**%.2f**" % (a / b) if a and b else "n/a"


def table_row(label, kvals, tvals):
    km, kmed = mm(kvals)
    tm, tmed = mm(tvals)
    return "| %s | %s | %s | %s | %s | %s |" % (label, f2(km), f2(kmed), f2(tm), f2(tmed), ratio(kmed, tmed))


def write_reports(res, args):
    L = ["# anykvm vs QEMU TCG", ""]
    m = res["machine"]
    L += ["Measured %s UTC on %s (%s, %d CPUs); anykvm from %s; %s; `-cpu %s -m %s`; load average before %s, "
          "after %s." % (res["started"], m["host"], m["cpu_model"], m["cpus"], m.get("source", "?"), m["qemu"],
                         args.cpu, args.mem,
           " ".join(res["loadavg_before"] or []), " ".join(res["loadavg_after"] or [])), ""]
    L += ["%d runs of each accelerator per guest, alternating; the Debian sessions run the in-guest "
          "workloads after booting. Wall times are seconds from QEMU's start; *ratio* = anykvm median / "
          "TCG median (below 1 means anykvm is faster). The machine may be shared: see the load averages. "
          "Run took %.0f s." % (args.runs, res.get("duration_s", 0)), ""]
    for key, why in res.get("skipped", []):
        L += ["**Guest %s skipped** (%s)." % (key, why), ""]
    L += ["| guest · metric | anykvm min | anykvm median | TCG min | TCG median | ratio |",
          "|---|---|---|---|---|---|"]
    for g in res["guests"]:
        k = [r for r in g["boot"] if r["accel"] == "anykvm" and r["ok"]]
        t = [r for r in g["boot"] if r["accel"] == "tcg" and r["ok"]]
        fails = [r for r in g["boot"] if not r["ok"]]
        short = g["key"]
        L.append(table_row("%s · boot to `%s` (s)" % (short, g["marker"]), [r["marker_s"] for r in k],
                           [r["marker_s"] for r in t]))
        L.append(table_row("%s · boot to shell prompt (s)" % short, [r["shell_s"] for r in k],
                           [r["shell_s"] for r in t]))
        whole = " (boot + workloads + power-off)" if g.get("kind") == "work" else ""
        L.append(table_row("%s · %s, QEMU exited (s)" % (short, "session" + whole if whole else "boot + power-off"),
                           [r["exit_s"] for r in k], [r["exit_s"] for r in t]))
        L.append(table_row("%s · QEMU CPU time, whole session%s (s)" % (short, whole), [r["cpu_s"] for r in k],
                           [r["cpu_s"] for r in t]))
        if fails:
            L.append("| %s · **%d failed run(s)** | %s | | | | |" %
                     (short, len(fails), "; ".join(" ".join(r.get("error", [])[:1]) for r in fails)[:200]))
    work = res.get("work")
    if work:
        for name, desc, _, _, _ in WORKLOADS:
            for key, label in (("host_s", "host wall"), ("guest_s", "guest `time`")):
                kv = [r["work"].get(name, {}).get(key) for r in work["runs"] if r["accel"] == "anykvm"]
                tv = [r["work"].get(name, {}).get(key) for r in work["runs"] if r["accel"] == "tcg"]
                L.append(table_row("debian · %s, %s (s)" % (name, label), kv, tv))
    L.append("")
    if work:
        L += ["## In-guest workloads", "",
              "| workload | what | result printed (must match) | same under both? |", "|---|---|---|---|"]
        for name, desc, _, _, _ in WORKLOADS:
            outs = {r["accel"]: r["work"].get(name, {}).get("result") for r in work["runs"]}
            allr = [r["work"].get(name, {}).get("result") for r in work["runs"]]
            same = ("incomplete (a run failed)" if not allr or None in allr else
                    "yes" if len(set(allr)) == 1 else "**NO**")
            shown = sorted(set(str(x) for x in allr))
            L.append("| %s | %s | `%s` | %s |" % (name, desc, "` / `".join(shown), same))
        L.append("")
    if res.get("idle"):
        L += ["## Idle at the shell prompt", "",
              "Each round boots the guest under both accelerators at once, waits %.0f s after its marker, then "
              "reads each QEMU process's CPU time (all threads) over the same %.0f s window. %% of one host core."
              % (args.idle_settle, args.idle_seconds), "",
              "| guest · round | anykvm | TCG | ratio |", "|---|---|---|---|"]
        for r in res["idle"]:
            c = r.get("cpu_pct")
            if not c:
                L.append("| %s · %d | **failed**: %s | | |" % (r["guest"], r["round"], r.get("error")))
                continue
            k, t = c.get("anykvm"), c.get("tcg")
            L.append("| %s · %d | %s | %s | %s |" % (r["guest"], r["round"], f2(k), f2(t), ratio(k, t)))
        L.append("")
    L += ["## Engine rate (ANYKVM_STATS)", "",
          "Guest instructions executed by the engine (counted per decoded block entered), over the vCPU "
          "threads' CPU time. Exits are returns from the engine to KVM_RUN's caller (port I/O, MMIO, "
          "HLT, interrupt windows, kicks).", "",
          "| run | guest instructions (median) | vCPU CPU s | M insns / vCPU CPU s | insns/block | exits | "
          "exits/s of vCPU CPU |", "|---|---|---|---|---|---|---|"]
    sets = [("%s %s" % (g["key"], "boot + workloads" if g.get("kind") == "work" else "boot"), g["boot"])
            for g in res["guests"]]
    for label, runs in sets:
        st = [r["stats"] for r in runs if r["accel"] == "anykvm" and r["ok"] and r.get("stats")
              and r["stats"].get("insns")]
        if not st:
            L.append("| %s | no stats | | | | | |" % label)
            continue
        ins = statistics.median(s["insns"] for s in st)
        cpu = statistics.median(s["vcpu_cpu_s"] for s in st)
        rate = statistics.median(s["insns_per_vcpu_cpu_s"] or 0 for s in st)
        ipb = statistics.median(s["insns"] / max(1, s["blocks"]) for s in st)
        ex = statistics.median(s["exits"] for s in st)
        L.append("| %s | %.3g | %.2f | %.1f | %.2f | %d | %.0f |" %
                 (label, ins, cpu, rate / 1e6, ipb, ex, ex / cpu if cpu else 0))
    L.append("")
    prof = res.get("profile")
    if prof:
        L += ["## Where anykvm's time goes (perf record -e cpu-clock, one %s boot)" % prof["run"].get("guest"), ""]
        if prof.get("error") or not prof.get("summary"):
            L.append("perf failed: %s" % (prof.get("error") or "no samples"))
        else:
            s = prof["summary"]
            L += ["%s samples at %d Hz over the whole process tree (QEMU's threads included); "
                  "run wall %s s." % (s.get("samples"), args.perf_freq, f2(prof["run"].get("exit_s"))), "",
                  "| part | % of samples |", "|---|---|"]
            for gname, v in sorted(s["groups"].items(), key=lambda kv: -kv[1]):
                L.append("| %s | %.1f |" % (gname, v))
            L += ["", "Top symbols:", "", "| % | dso | symbol |", "|---|---|---|"]
            for t in s["top"]:
                L.append("| %.2f | %s | `%s` |" % (t["pct"], t["dso"], t["sym"].replace("|", "\\|")))
        L.append("")
    md = "\n".join(L) + "\n"
    with open(os.path.join(args.out, "results.md"), "w") as f:
        f.write(md)
    with open(os.path.join(args.out, "results.json"), "w") as f:
        json.dump(res, f, indent=1)
    print(md)


def machine_info(args):
    model = "?"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        q = subprocess.run([args.qemu, "--version"], capture_output=True, text=True).stdout.splitlines()[0]
    except (OSError, IndexError):
        q = "?"
    src = args.source
    if not src:
        try:
            sha = subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"], capture_output=True,
                                 text=True).stdout.strip()
            dirty = subprocess.run(["git", "-C", ROOT, "status", "--porcelain", "--untracked-files=no"],
                                   capture_output=True, text=True).stdout.strip()
            src = "git %s%s" % (sha or "?", " + uncommitted changes" if dirty else "")
        except OSError:
            src = "?"
    return {"source": src, "host": platform.node(), "kernel": platform.release(), "cpu_model": model,
            "cpus": os.cpu_count(), "qemu": q}


def proc_cpu_ticks(pid):
    """utime + stime of a whole process (all its threads), in clock ticks."""
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


def idle_once(guest, args, tag):
    """Boot the guest under every accelerator at once, wait for its shell, then
    measure each QEMU process's CPU over the same window (the machine's noise,
    other tenants included, then falls on both alike)."""
    procs = {}
    try:
        for accel in ACCELS:
            log = os.path.join(args.logs, "%s-%s.log" % (tag, accel))
            cmd = qemu_cmd(guest, accel, args)
            if args.floppy in cmd:  # QEMU locks a writable image: each gets its own copy
                img = os.path.join(args.logs, "%s-%s.img" % (tag, accel))
                shutil.copyfile(args.floppy, img)
                cmd = [img if x == args.floppy else x for x in cmd]
            with open(log, "wb") as out:
                # stdin stays an open pipe: the serial console sees no EOF.
                p = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=out, stderr=subprocess.STDOUT)
            procs[accel] = (p, log)
        deadline = time.monotonic() + args.timeout
        for accel, (p, log) in procs.items():
            while True:
                with open(log, "rb") as f:
                    if guest["marker"].encode() in f.read():
                        break
                if p.poll() is not None or time.monotonic() > deadline:
                    return {"error": "%s: no %r (exit %s)" % (accel, guest["marker"], p.poll())}
                time.sleep(1)
        time.sleep(args.idle_settle)
        t0 = {a: proc_cpu_ticks(p.pid) for a, (p, _) in procs.items()}
        w0 = time.monotonic()
        time.sleep(args.idle_seconds)
        t1 = {a: proc_cpu_ticks(p.pid) for a, (p, _) in procs.items()}
        wall = time.monotonic() - w0
        hz = os.sysconf("SC_CLK_TCK")
        return {"seconds": round(wall, 1),
                "cpu_pct": {("anykvm" if a == "kvm" else a): round(100.0 * (t1[a] - t0[a]) / hz / wall, 2)
                            for a in t0}}
    finally:
        for p, _ in procs.values():
            p.kill()
            p.wait()
        for accel in ACCELS:
            img = os.path.join(args.logs, "%s-%s.img" % (tag, accel))
            if os.path.exists(img):
                os.unlink(img)


ACCELS = ("kvm", "tcg")


def alternate(i):
    order = ("kvm", "tcg") if i % 2 == 0 else ("tcg", "kvm")
    return [a for a in order if a in ACCELS]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--build", default=os.path.join(ROOT, "build"),
                    help="build directory holding src/cli/anykvm and guests/debian-686 (default: build)")
    ap.add_argument("--anykvm", help="the anykvm command (default: BUILD/src/cli/anykvm)")
    ap.add_argument("--guest-dir", help="Debian guest dir (default: BUILD/guests/debian-686)")
    ap.add_argument("--floppy", default=os.path.normpath(os.path.join(ROOT, "..", "shared", "guests", "bootfd.img")))
    ap.add_argument("--runs", type=int, default=3, help="boot runs of each accelerator per guest (default 3)")
    ap.add_argument("--perf-guest", default="floppy", help="guest of the profiled boot: floppy or debian")
    ap.add_argument("--scale", type=float, default=1.0, help="multiply workload sizes")
    ap.add_argument("--qemu", default="qemu-system-i386")
    ap.add_argument("--cpu", default="qemu32")
    ap.add_argument("--mem", default="256M")
    ap.add_argument("--timeout", type=float, default=1200, help="seconds per QEMU session")
    ap.add_argument("--perf", default="perf")
    ap.add_argument("--perf-freq", type=int, default=499)
    ap.add_argument("--perf-top", type=int, default=20)
    ap.add_argument("--no-boot", dest="boot", action="store_false")
    ap.add_argument("--no-workloads", dest="workloads", action="store_false")
    ap.add_argument("--no-perf", dest="profile", action="store_false")
    ap.add_argument("--idle-seconds", type=float, default=60,
                    help="idle CPU measured over this window at the shell prompt (0: skip)")
    ap.add_argument("--idle-rounds", type=int, default=2)
    ap.add_argument("--idle-settle", type=float, default=20, help="seconds after the marker before measuring")
    ap.add_argument("--guests", default="floppy,debian", help="comma list of floppy, debian")
    ap.add_argument("--source", help="what the measured anykvm was built from (default: this tree's git HEAD)")
    ap.add_argument("--accels", default="kvm,tcg", help="comma list: kvm (anykvm), tcg")
    ap.add_argument("--out", default=os.path.join(ROOT, "bench", "results"))
    args = ap.parse_args()
    args.anykvm = os.path.abspath(args.anykvm or os.path.join(args.build, "src", "cli", "anykvm"))
    args.guest_dir = os.path.abspath(args.guest_dir or os.path.join(args.build, "guests", "debian-686"))
    global ACCELS
    ACCELS = tuple(a for a in args.accels.split(",") if a in ("kvm", "tcg"))
    args.logs = os.path.join(args.out, "logs")
    os.makedirs(args.logs, exist_ok=True)
    if "kvm" in ACCELS and not os.access(args.anykvm, os.X_OK):
        sys.exit("bench: %s not found: build first (make build, or --build DIR)" % args.anykvm)
    if not shutil.which(args.qemu):
        sys.exit("bench: %s not found" % args.qemu)

    want = args.guests.split(",")
    guests = []
    skipped = []
    for key, mk in (("floppy", floppy_guest), ("debian", debian_guest)):
        if key in want:
            g = mk(args)
            if g is None:
                why = "missing: %s" % (args.floppy if key == "floppy" else args.guest_dir)
                skipped.append((key, why))
                print("bench: guest %s %s: skipped" % (key, why), file=sys.stderr)
            else:
                guests.append(g)

    res = {"started": time.strftime("%Y-%m-%d %H:%M", time.gmtime()), "machine": machine_info(args),
           "loadavg_before": loadavg(), "args": {k: v for k, v in vars(args).items()},
           "workloads": [{"name": n, "what": d, "size": s, "command": c, "check": k} for n, d, s, c, k in WORKLOADS],
           "guests": [], "skipped": skipped}
    t_start = time.monotonic()
    for g in guests:
        entry = {"key": g["key"], "name": g["name"], "marker": g["marker"], "boot": []}
        res["guests"].append(entry)
        if not args.boot:
            continue
        # The Debian sessions run the workloads after the boot markers (one boot
        # serves both): its power-off and CPU rows then cover the whole session.
        kind = "work" if g["key"] == "debian" and args.workloads else "boot"
        entry["kind"] = kind
        for i in range(args.runs):
            for accel in alternate(i):
                r = run_once(g, accel, kind, args, "%s-%s-%s-%d" % (g["key"], kind, accel, i + 1))
                entry["boot"].append(r)
                print("[%4.0fs] %s %s %s #%d: %s %s" % (time.monotonic() - t_start, g["key"], kind, r["accel"], i + 1,
                      {k: r.get(k) for k in ("ok", "marker_s", "shell_s", "exit_s", "cpu_s")}, r.get("work", "")),
                      flush=True)
        if kind == "work":
            res["work"] = {"runs": entry["boot"]}
    if args.idle_seconds > 0:
        res["idle"] = []
        for g in guests:
            for i in range(args.idle_rounds):
                r = idle_once(g, args, "%s-idle-%d" % (g["key"], i + 1))
                r.update({"guest": g["key"], "round": i + 1})
                res["idle"].append(r)
                print("[%4.0fs] idle %s #%d: %s" % (time.monotonic() - t_start, g["key"], i + 1,
                                                     r.get("cpu_pct") or r.get("error")), flush=True)
    pg = next((g for g in guests if g["key"] == args.perf_guest), None)
    if pg and args.profile:
        if not shutil.which(args.perf):
            res["profile"] = {"error": "%s not found" % args.perf}
        else:
            data = os.path.join(args.logs, "perf-%s-boot.data" % pg["key"])
            r = run_once(pg, "kvm", "boot", args, "%s-perf-anykvm" % pg["key"], perf_data=data)
            r["guest"] = pg["key"]
            res["profile"] = {"run": r}
            if r["ok"] or os.path.exists(data):
                res["profile"]["summary"] = perf_summary(data, args)
            else:
                res["profile"]["error"] = " ".join(r.get("error", []))
            print("[%4.0fs] perf: %s" % (time.monotonic() - t_start, res["profile"].get("summary", {}).get("groups")),
                  flush=True)
    res["loadavg_after"] = loadavg()
    res["duration_s"] = round(time.monotonic() - t_start, 1)
    write_reports(res, args)
    bad = [r for g in res["guests"] for r in g["boot"] if not r["ok"]]
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
