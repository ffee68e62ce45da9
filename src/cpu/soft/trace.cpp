// Trace output (trace.h). Lines are written with one fprintf each so
// concurrent vCPU threads do not interleave within a line.
#include "cpu/soft/trace.h"

#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cinttypes>
#include <cstdlib>
#include <cstring>
#include <string>

#include "cpu/soft/cpu.h"
#include "x86/decode/disasm.h"

namespace anykvm::soft {

VcpuStats g_vcpu_stats[k_stats_vcpus];

namespace {

const auto k_load_time = std::chrono::steady_clock::now();
FILE* g_stats_out = nullptr;

const char* const k_exit_names[VcpuStats::k_exit_reasons] = {
    "io", "mmio", "hlt", "irq_window_open", "shutdown", "internal_error", "debug", "interrupted", "other"};

// utime + stime of one thread of this process, in seconds; < 0 when unknown.
double thread_cpu_seconds(int tid) {
  char path[64];
  std::snprintf(path, sizeof path, "/proc/self/task/%d/stat", tid);
  FILE* f = std::fopen(path, "r");
  if (!f) return -1;
  char buf[1024] = {};
  size_t n = std::fread(buf, 1, sizeof buf - 1, f);
  std::fclose(f);
  buf[n] = 0;
  const char* p = std::strrchr(buf, ')');  // the command name may hold spaces
  if (!p) return -1;
  unsigned long long ut = 0, st = 0;
  // After ")": state(3) ... utime is field 14, stime 15.
  if (std::sscanf(p + 1, " %*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut, &st) != 2) return -1;
  return double(ut + st) / double(sysconf(_SC_CLK_TCK));
}

void print_stats() {
  FILE* out = g_stats_out ? g_stats_out : stderr;
  const double wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - k_load_time).count();
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  const double proc_cpu = double(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
                          double(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
  std::fprintf(out, "anykvm-stats: process pid=%d wall_s=%.3f cpu_s=%.3f\n", int(getpid()), wall, proc_cpu);
  for (unsigned i = 0; i < k_stats_vcpus; ++i) {
    const VcpuStats& s = g_vcpu_stats[i];
    const uint64_t insns = s.insns.load(std::memory_order_relaxed);
    if (!insns && !s.used.load(std::memory_order_relaxed)) continue;
    const uint64_t blocks = s.blocks.load(std::memory_order_relaxed);
    uint64_t exits = 0;
    std::string by;
    for (unsigned r = 0; r < VcpuStats::k_exit_reasons; ++r) {
      const uint64_t e = s.exits[r].load(std::memory_order_relaxed);
      exits += e;
      if (e) by += std::string(" exit_") + k_exit_names[r] + "=" + std::to_string(e);
    }
    const int tid = s.tid.load(std::memory_order_relaxed);
    const double cpu = tid ? thread_cpu_seconds(tid) : -1;
    std::fprintf(out,
                 "anykvm-stats: vcpu%u insns=%" PRIu64 " blocks=%" PRIu64 " insns_per_block=%.2f exits=%" PRIu64
                 "%s thread_cpu_s=%.3f insns_per_cpu_s=%.0f\n",
                 i, insns, blocks, blocks ? double(insns) / double(blocks) : 0.0, exits, by.c_str(), cpu,
                 cpu > 0 ? double(insns) / cpu : 0.0);
  }
  std::fflush(out);
}

}  // namespace

const TraceConfig& trace_config() {
  static const TraceConfig cfg = [] {
    TraceConfig t;
    const char* sv = std::getenv("ANYKVM_STATS");
    if (sv && *sv && std::strcmp(sv, "0") != 0) {
      t.stats = true;
      t.exits = true;
      if (std::strcmp(sv, "1") != 0) g_stats_out = std::fopen(sv, "a");
      std::atexit(print_stats);
    }
    const char* v = std::getenv("ANYKVM_TRACE");
    if (!v) return t;
    std::string s = std::string(",") + v + ",";
    t.insn = s.find(",insn,") != std::string::npos || s.find(",all,") != std::string::npos;
    t.regs = s.find(",regs,") != std::string::npos;
    if (t.regs) t.insn = true;
    t.print_exits = s.find(",exits,") != std::string::npos || s.find(",all,") != std::string::npos;
    t.exits = t.exits || t.print_exits;
    t.out = stderr;
    if (const char* f = std::getenv("ANYKVM_TRACE_FILE")) {
      if (FILE* fp = std::fopen(f, "w")) t.out = fp;
    }
    // Without the instruction trace, lines are few: line-buffer them so a
    // killed client (a hung boot under a test) still leaves its last exits.
    if (!t.insn && t.out != stderr) std::setvbuf(t.out, nullptr, _IOLBF, 0);
    if (t.stats && !g_stats_out) g_stats_out = t.out;
    return t;
  }();
  return cfg;
}

void trace_insn(Cpu& c, const x86::Insn& in) {
  const TraceConfig& t = trace_config();
  uint8_t bytes[16] = {};
  size_t n = 0;
  try {
    n = c.fetch_code(c.seg[1].base + c.rip, bytes, in.len);
  } catch (...) {
  }
  char hex[48] = {};
  for (size_t k = 0; k < n && k < 15; ++k) std::snprintf(hex + 3 * k, 4, "%02x ", bytes[k]);
  std::string d = x86::disassemble(in, c.rip);
  if (t.regs) {
    std::fprintf(t.out,
                 "[vcpu%u] %04x:%08" PRIx64 " %-30s %-40s eax=%08x ebx=%08x ecx=%08x edx=%08x esi=%08x edi=%08x "
                 "ebp=%08x esp=%08x fl=%08x\n",
                 c.id.raw(), c.seg[1].selector, c.rip, hex, d.c_str(), uint32_t(c.gpr[0]), uint32_t(c.gpr[3]),
                 uint32_t(c.gpr[1]), uint32_t(c.gpr[2]), uint32_t(c.gpr[6]), uint32_t(c.gpr[7]), uint32_t(c.gpr[5]),
                 uint32_t(c.gpr[4]), c.eflags());
  } else {
    std::fprintf(t.out, "[vcpu%u] %04x:%08" PRIx64 " %-30s %s\n", c.id.raw(), c.seg[1].selector, c.rip, hex,
                 d.c_str());
  }
}

void trace_exit(const Cpu& c, const cpu::VcpuExit& e) {
  const TraceConfig& t = trace_config();
  if (t.stats) {
    static thread_local const int tid = int(gettid());
    VcpuStats& s = g_vcpu_stats[c.id.raw() % k_stats_vcpus];
    const unsigned r = std::min<unsigned>(unsigned(e.reason), VcpuStats::k_exit_reasons - 1);
    s.exits[r].store(s.exits[r].load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
    s.tid.store(tid, std::memory_order_relaxed);
    s.used.store(true, std::memory_order_relaxed);
  }
  if (!t.print_exits) return;
  static const char* const names[] = {"io", "mmio", "hlt", "irq_window_open", "shutdown", "internal_error",
                                      "debug", "interrupted"};
  unsigned r = unsigned(e.reason);
  const char* name = r < 8 ? names[r] : "?";
  switch (e.reason) {
    case cpu::ExitReason::Io:
      std::fprintf(t.out, "[vcpu%u] exit %s %s port=0x%x size=%u count=%u rip=%08" PRIx64 "\n", c.id.raw(), name,
                   e.io.out ? "out" : "in", e.io.port, e.io.size, e.io.count, c.rip);
      break;
    case cpu::ExitReason::Mmio: {
      uint64_t v = 0;
      std::memcpy(&v, e.mmio.data, std::min<uint32_t>(e.mmio.len, 8));
      std::fprintf(t.out, "[vcpu%u] exit %s %s gpa=0x%" PRIx64 " len=%u data=0x%" PRIx64 " rip=%08" PRIx64 "\n",
                   c.id.raw(), name, e.mmio.is_write ? "write" : "read", e.mmio.gpa, e.mmio.len, v, c.rip);
      break;
    }
    default:
      std::fprintf(t.out, "[vcpu%u] exit %s rip=%04x:%08" PRIx64 "\n", c.id.raw(), name, c.seg[1].selector, c.rip);
      break;
  }
}

}  // namespace anykvm::soft
