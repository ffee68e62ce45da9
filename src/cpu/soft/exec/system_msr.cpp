// CPUID, RDTSC, RDMSR/WRMSR and SYSENTER/SYSEXIT (SDM vol. 2). Semantics of
// the answers live in cpuid_msr.cpp; this file is the instruction side:
// privilege checks (CPL 0 for MSRs, CR4.TSD for RDTSC) and the flat segments
// SYSENTER/SYSEXIT load. Leaves out: the 64-bit (REX.W) SYSEXIT form.
#include "cpu/soft/cpuid_msr.h"
#include "cpu/soft/exec/system_handlers.h"
#include "cpu/soft/exec/system_util.h"

namespace anykvm::soft {
namespace {

using namespace sys;
enum : unsigned { RAX = 0, RCX = 1, RDX = 2, RBX = 3, RSP = 4 };

void h_cpuid(Cpu& c, const Insn& i) {
  uint32_t out[4];
  cpuid_query(c, uint32_t(c.gpr[RAX]), uint32_t(c.gpr[RCX]), out);
  c.gpr[RAX] = out[0];
  c.gpr[RBX] = out[1];
  c.gpr[RCX] = out[2];
  c.gpr[RDX] = out[3];
  advance(c, i);
}

void h_rdtsc(Cpu& c, const Insn& i) {
  if ((c.cr4 & cr4::TSD) && c.cpl != 0 && c.protected_mode()) throw fault(Vec::GP, 0);
  uint64_t t = guest_tsc(c);
  c.gpr[RAX] = uint32_t(t);
  c.gpr[RDX] = uint32_t(t >> 32);
  advance(c, i);
}

void h_rdmsr(Cpu& c, const Insn& i) {
  require_cpl0(c);
  uint64_t v;
  if (!msr_read(c, uint32_t(c.gpr[RCX]), v, false)) throw fault(Vec::GP, 0);
  c.gpr[RAX] = uint32_t(v);
  c.gpr[RDX] = uint32_t(v >> 32);
  advance(c, i);
}

void h_wrmsr(Cpu& c, const Insn& i) {
  require_cpl0(c);
  uint64_t v = (uint64_t(uint32_t(c.gpr[RDX])) << 32) | uint32_t(c.gpr[RAX]);
  if (!msr_write(c, uint32_t(c.gpr[RCX]), v, false)) throw fault(Vec::GP, 0);
  advance(c, i);
}

// The flat 4 GiB segments SYSENTER/SYSEXIT load without reading the GDT.
Segment flat(uint16_t sel, bool code, uint8_t dpl) {
  Segment s{};
  s.selector = sel;
  s.base = 0;
  s.limit = 0xffffffff;
  s.type = code ? 0xb : 0x3;  // execute/read accessed, read/write accessed
  s.s = 1;
  s.present = 1;
  s.dpl = dpl;
  s.db = 1;
  s.g = 1;
  return s;
}

void h_sysenter(Cpu& c, const Insn&) {
  uint16_t cs = uint16_t(c.sysenter_cs);
  if (!c.protected_mode() || (cs & 0xfffc) == 0) throw fault(Vec::GP, 0);
  c.eflags_rest &= ~(fl::VM | fl::IF | fl::RF);
  c.seg[sreg::CS] = flat(cs & 0xfffc, true, 0);
  c.seg[sreg::SS] = flat(uint16_t((cs & 0xfffc) + 8), false, 0);
  c.cpl = 0;
  c.gpr[RSP] = uint32_t(c.sysenter_esp);
  c.rip = uint32_t(c.sysenter_eip);
}

void h_sysexit(Cpu& c, const Insn&) {
  uint16_t cs = uint16_t(c.sysenter_cs);
  if (!c.protected_mode() || c.v86() || c.cpl != 0 || (cs & 0xfffc) == 0) throw fault(Vec::GP, 0);
  c.seg[sreg::CS] = flat(uint16_t(((cs + 16) & 0xfffc) | 3), true, 3);
  c.seg[sreg::SS] = flat(uint16_t(((cs + 24) & 0xfffc) | 3), false, 3);
  c.cpl = 3;
  c.gpr[RSP] = uint32_t(c.gpr[RCX]);
  c.rip = uint32_t(c.gpr[RDX]);
}

}  // namespace

void register_system_msr(x86::DispatchTable& t) {
  using x86::OpKey;
  using x86::OpMap;
  t.set(OpKey{OpMap::TwoByte, 0xa2}, h_cpuid);
  t.set(OpKey{OpMap::TwoByte, 0x31}, h_rdtsc);
  t.set(OpKey{OpMap::TwoByte, 0x32}, h_rdmsr);
  t.set(OpKey{OpMap::TwoByte, 0x30}, h_wrmsr);
  t.set(OpKey{OpMap::TwoByte, 0x34}, h_sysenter);
  t.set(OpKey{OpMap::TwoByte, 0x35}, h_sysexit);
}

}  // namespace anykvm::soft
