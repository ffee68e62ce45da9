// Small helpers shared by the system-instruction handlers (exec/system*.cpp):
// effective address of a decoded memory operand, RIP advance with the code
// size's wrap, r/m operand reads and privilege preconditions. Local to the
// system area so it does not depend on the timing of exec/'s own helpers.
#pragma once
#include "cpu/soft/cpu.h"
#include "cpu/soft/mmu/descriptor.h"

namespace anykvm::soft::sys {

inline uint64_t addr_mask(uint8_t addrsize) {
  return addrsize == 2 ? 0xffffull : addrsize == 4 ? 0xffffffffull : ~0ull;
}

// Offset of the memory operand inside its segment (SDM vol. 2, 2.1.5).
inline uint64_t effective_address(const Cpu& c, const Insn& i) {
  uint64_t a = uint64_t(i.disp);
  if (i.base != x86::k_no_reg) a += c.gpr[i.base];
  if (i.index != x86::k_no_reg) a += c.gpr[i.index] << i.scale;
  if (i.rip_relative) a += c.rip + i.len;
  return a & addr_mask(i.addrsize);
}

inline uint64_t next_ip(const Cpu& c, const Insn& i) {
  uint64_t n = c.rip + i.len;
  if (c.long_mode() && c.seg[sreg::CS].l) return n;
  return c.code32() ? uint32_t(n) : uint16_t(n);
}
inline void advance(Cpu& c, const Insn& i) { c.rip = next_ip(c, i); }

// ModRM register numbers for forms whose r/m is always a register (MOV CRn/DRn).
inline unsigned modrm_rm(const Insn& i) { return (i.modrm & 7) | (i.rm & 8); }
inline unsigned modrm_reg(const Insn& i) { return i.reg; }

inline uint16_t read_rm16(Cpu& c, const Insn& i) {
  if (i.mem) return c.read<uint16_t>(i.seg, effective_address(c, i));
  return uint16_t(c.gpr[i.rm]);
}

// Instructions only valid in protected mode outside v86 (#UD otherwise).
inline void require_protected(const Cpu& c) {
  if (!c.protected_mode() || c.v86()) throw fault(Vec::UD);
}
// CPL 0 instructions: #GP(0) otherwise (v86 runs at CPL 3).
inline void require_cpl0(const Cpu& c) {
  if (c.cpl != 0) throw fault(Vec::GP, 0);
}

}  // namespace anykvm::soft::sys
