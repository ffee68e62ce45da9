// Shared pieces of the MMX/SSE handlers (simd_*.cpp): the 128-bit value type,
// the availability checks (SDM vol. 3, 13.1/13.2 and the per-instruction
// exception tables: CR0.EM -> #UD, CR4.OSFXSR = 0 -> #UD for SSE, CR0.TS ->
// #NM, pending x87 exception -> #MF for MMX), the x87 -> MMX transition
// (SDM vol. 1, 9.5: TOP = 0, all tags valid), MMX registers aliased on the
// x87 mantissas (exponent field set to all ones on write), 16-byte memory
// operands as two 8-byte accesses after a whole-operand check, and the
// alignment #GP(0) of legacy 16-byte SSE operands (SDM vol. 1, 11.6.9).
#pragma once
#include <array>
#include <cstdint>
#include <cstring>

#include "cpu/soft/exec/common.h"
#include "cpu/soft/fpu/fpu.h"

namespace anykvm::soft::simd {

using x86::DispatchTable;
using x86::Insn;
using x86::OpKey;
using x86::OpMap;
using x86::SimdPrefix;
using ex::advance;
using ex::ea;

using V = std::array<uint64_t, 2>;

// MXCSR bits (SDM vol. 1, 10.2.3).
namespace mx {
constexpr uint32_t IE = 1u << 0, DE = 1u << 1, ZE = 1u << 2, OE = 1u << 3, UE = 1u << 4, PE = 1u << 5,
                   FLAGS = 0x3f, DAZ = 1u << 6, MASKS = 0x3fu << 7, UM = 1u << 11, RC = 3u << 13,
                   FTZ = 1u << 15;
}
constexpr uint16_t k_fsw_es = 1u << 7, k_fsw_top = 7u << 11;

inline void check_sse(Cpu& c) {
  if (c.cr0 & cr0::EM) throw fault(Vec::UD);
  if (!(c.cr4 & cr4::OSFXSR)) throw fault(Vec::UD);
  if (c.cr0 & cr0::TS) throw fault(Vec::NM);
}

// A pending unmasked x87 exception is reported before an MMX instruction.
// With CR0.NE = 0 the x87 area's FERR#/IRQ 13 path applies (fpu_pending_error).
inline void check_x87_pending(Cpu& c) {
  if ((c.fpu.fsw & k_fsw_es) || c.ferr) [[unlikely]]
    fpu_pending_error(c);
}

inline void check_mmx(Cpu& c) {
  if (c.cr0 & cr0::EM) throw fault(Vec::UD);
  if (c.cr0 & cr0::TS) throw fault(Vec::NM);
  check_x87_pending(c);
}

// Commit-time x87 -> MMX transition.
inline void mmx_enter(Cpu& c) {
  c.fpu.fsw &= uint16_t(~k_fsw_top);
  c.fpu.ftw = 0;
}
inline uint64_t mm(const Cpu& c, unsigned r) { return c.fpu.st[r & 7].mantissa; }
inline void set_mm(Cpu& c, unsigned r, uint64_t v) {
  c.fpu.st[r & 7].mantissa = v;
  c.fpu.st[r & 7].sign_exp = 0xffff;
}
inline V& xmm(Cpu& c, unsigned r) { return c.fpu.xmm[r & 7]; }

inline void check_align16(Cpu& c, const Insn& i, uint64_t off) {
  if ((c.seg[i.seg].base + off) & 15) throw fault(Vec::GP, 0);
}

inline V read128(Cpu& c, uint8_t seg, uint64_t off) {
  c.check_read(seg, off, 16);
  V v;
  v[0] = c.read<uint64_t>(seg, off);
  v[1] = c.read<uint64_t>(seg, off + 8);
  return v;
}
inline void write128(Cpu& c, uint8_t seg, uint64_t off, const V& v) {
  c.check_write(seg, off, 16);
  c.write<uint64_t>(seg, off, v[0]);
  c.write<uint64_t>(seg, off + 8, v[1]);
}

// The W operand: an XMM register, or `size` bytes of memory zero-extended
// (16 = m128, aligned unless `unaligned`).
inline V get_w(Cpu& c, const Insn& i, unsigned size, bool unaligned = false) {
  if (!i.mem) return xmm(c, i.rm);
  uint64_t off = ea(c, i);
  switch (size) {
    case 4: return V{c.read<uint32_t>(i.seg, off), 0};
    case 8: return V{c.read<uint64_t>(i.seg, off), 0};
    default:
      if (!unaligned) check_align16(c, i, off);
      return read128(c, i.seg, off);
  }
}
// The Q operand: an MMX register or `size` (4 or 8) bytes of memory.
inline uint64_t get_q(Cpu& c, const Insn& i, unsigned size = 8) {
  if (!i.mem) return mm(c, i.rm);
  uint64_t off = ea(c, i);
  return size == 4 ? c.read<uint32_t>(i.seg, off) : c.read<uint64_t>(i.seg, off);
}

// Registration keys.
inline OpKey key(uint8_t opc, SimdPrefix p, int8_t group = -1, int8_t modrm_class = -1) {
  OpKey k{OpMap::TwoByte, opc, group, p, true, modrm_class};
  return k;
}
constexpr SimdPrefix NP = SimdPrefix::None, P66 = SimdPrefix::P66, PF3 = SimdPrefix::PF3, PF2 = SimdPrefix::PF2;

// Per-area registration (simd_int.cpp, simd_move.cpp, simd_float.cpp).
void register_simd_int(DispatchTable& t);
void register_simd_move(DispatchTable& t);
void register_simd_float(DispatchTable& t);

}  // namespace anykvm::soft::simd
