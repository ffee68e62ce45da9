// Trace output (trace.h). Lines are written with one fprintf each so
// concurrent vCPU threads do not interleave within a line.
#include "cpu/soft/trace.h"

#include <algorithm>
#include <cinttypes>
#include <cstdlib>
#include <cstring>
#include <string>

#include "cpu/soft/cpu.h"
#include "x86/decode/disasm.h"

namespace anykvm::soft {

const TraceConfig& trace_config() {
  static const TraceConfig cfg = [] {
    TraceConfig t;
    const char* v = std::getenv("ANYKVM_TRACE");
    if (!v) return t;
    std::string s = std::string(",") + v + ",";
    t.insn = s.find(",insn,") != std::string::npos || s.find(",all,") != std::string::npos;
    t.regs = s.find(",regs,") != std::string::npos;
    if (t.regs) t.insn = true;
    t.exits = s.find(",exits,") != std::string::npos || s.find(",all,") != std::string::npos;
    t.out = stderr;
    if (const char* f = std::getenv("ANYKVM_TRACE_FILE")) {
      if (FILE* fp = std::fopen(f, "w")) t.out = fp;
    }
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
