// Instructions with no data effect or a tiny one: NOP (90, 0F 1F and the 0F
// 19-1E hint space), PAUSE, PREFETCHh, LFENCE/MFENCE/SFENCE, CLFLUSH (faults
// like a byte read, SDM CLFLUSH), UD2 (#UD), XLAT, SALC (undocumented: AL =
// CF ? FFh : 0), and a default FWAIT that the FPU area may replace.
#include "cpu/soft/exec/common.h"

namespace anykvm::soft::ex {
namespace {

void h_nop(Cpu& c, const Insn& i) { advance(c, i); }

void h_fence(Cpu& c, const Insn& i) {
  // The engine executes one vCPU's accesses in order; a host fence orders
  // them against other vCPU threads.
  __atomic_thread_fence(__ATOMIC_SEQ_CST);
  advance(c, i);
}

void h_clflush(Cpu& c, const Insn& i) {
  c.check_read(i.seg, ea(c, i), 1);
  advance(c, i);
}

void h_ud2(Cpu&, const Insn&) { throw fault(Vec::UD); }

void h_xlat(Cpu& c, const Insn& i) {
  uint64_t a = (c.gpr[k_rbx] + uint8_t(c.gpr[k_rax])) & addr_mask(i.addrsize);
  c.set_reg<uint8_t>(k_rax, c.read<uint8_t>(i.seg, a));
  advance(c, i);
}

void h_salc(Cpu& c, const Insn& i) {
  c.set_reg<uint8_t>(k_rax, lazy_cf(c.lf) ? 0xff : 0);
  advance(c, i);
}

}  // namespace

void register_misc(DispatchTable& t) {
  t.set(key1(0x90), h_nop);  // also F3 90 PAUSE (legacy-prefix row)
  t.set(OpKey{OpMap::OneByte, 0x90, -1, x86::SimdPrefix::PF3, true}, h_nop);
  t.set(key1(0x9b), h_nop);
  for (uint8_t op = 0x19; op <= 0x1f; ++op) t.set(key2(op), h_nop);
  t.set(key2(0x18), h_nop);
  for (int8_t g = 5; g <= 7; ++g) {
    OpKey k = key2(0xae, g);
    k.modrm_class = 1;
    t.set(k, h_fence);
  }
  OpKey cl = key2(0xae, 7);
  cl.modrm_class = 0;
  t.set(cl, h_clflush);
  t.set(key2(0x0b), h_ud2);
  t.set(key1(0xd7), h_xlat);
  t.set(key1(0xd6), h_salc);
}

}  // namespace anykvm::soft::ex
