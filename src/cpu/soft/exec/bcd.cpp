// Decimal arithmetic: DAA, DAS, AAA, AAS, AAM, AAD (SDM vol. 2 operation
// sections). These are invalid in 64-bit mode, so the host cannot run them for
// us; the undefined flags follow what the host (AMD EPYC, checked by
// tests/unit/cpu_diff over every input) reports: DAA/DAS OF is the overflow of
// the 8-bit AL +/- correction; AAA/AAS SF/ZF/PF/OF are those of the 16-bit
// ADD/SUB AX, 0106h (or 0 when not adjusting) before AL's high nibble is
// cleared; AAM like a logical op on AL (OF = AF = CF = 0); AAD like the ADD of
// AL + AH * imm8 it performs.
#include "cpu/soft/exec/common.h"

namespace anykvm::soft::ex {
namespace {

constexpr unsigned k_ah = 4;  // 8-bit register number of AH

uint32_t szp(uint8_t v) {
  uint32_t f = 0;
  if (v == 0) f |= fl::ZF;
  if (v & 0x80) f |= fl::SF;
  if (parity_even(v)) f |= fl::PF;
  return f;
}

void h_daa(Cpu& c, const Insn& i) {
  uint32_t in = lazy_arith_flags(c.lf);
  uint8_t al = c.reg<uint8_t>(k_rax), old_al = al;
  bool old_cf = in & fl::CF, cf = false, af = false;
  if ((al & 0xf) > 9 || (in & fl::AF)) {
    cf = old_cf || al > 0xf9;
    al = uint8_t(al + 6);
    af = true;
  }
  if (old_al > 0x99 || old_cf) {
    al = uint8_t(al + 0x60);
    cf = true;
  }
  c.set_reg<uint8_t>(k_rax, al);
  // OF (undefined): signed overflow of old AL + correction (al = old_al + corr).
  const uint8_t corr = uint8_t(al - old_al);
  const bool of = ((old_al ^ al) & (corr ^ al) & 0x80) != 0;
  set_flags_materialized(c, szp(al) | (cf ? fl::CF : 0) | (af ? fl::AF : 0) | (of ? fl::OF : 0));
  advance(c, i);
}

void h_das(Cpu& c, const Insn& i) {
  uint32_t in = lazy_arith_flags(c.lf);
  uint8_t al = c.reg<uint8_t>(k_rax), old_al = al;
  bool old_cf = in & fl::CF, cf = false, af = false;
  if ((al & 0xf) > 9 || (in & fl::AF)) {
    cf = old_cf || al < 6;
    al = uint8_t(al - 6);
    af = true;
  }
  if (old_al > 0x99 || old_cf) {
    al = uint8_t(al - 0x60);
    cf = true;
  }
  c.set_reg<uint8_t>(k_rax, al);
  // OF (undefined): signed overflow of old AL - correction (al = old_al - corr).
  const uint8_t corr = uint8_t(old_al - al);
  const bool of = ((old_al ^ corr) & (old_al ^ al) & 0x80) != 0;
  set_flags_materialized(c, szp(al) | (cf ? fl::CF : 0) | (af ? fl::AF : 0) | (of ? fl::OF : 0));
  advance(c, i);
}

// AAA: AX += 106h when adjusting (SDM AAA operation); AAS: AX -= 6, AH -= 1.
template <bool SUB>
void h_aaa(Cpu& c, const Insn& i) {
  uint32_t in = lazy_arith_flags(c.lf);
  const uint16_t old = c.reg<uint16_t>(k_rax);
  const bool adj = (old & 0xf) > 9 || (in & fl::AF);
  const uint16_t corr = adj ? 0x106 : 0;
  const uint16_t sum = SUB ? uint16_t(old - corr) : uint16_t(old + corr);
  // SF/ZF/PF/OF (undefined) are those of the 16-bit ADD/SUB AX, corr.
  const bool of = SUB ? ((old ^ corr) & (old ^ sum) & 0x8000) != 0 : ((old ^ sum) & (corr ^ sum) & 0x8000) != 0;
  uint32_t f = (adj ? (fl::CF | fl::AF) : 0) | (of ? fl::OF : 0) | (sum & 0x8000 ? fl::SF : 0) |
               (sum == 0 ? fl::ZF : 0) | (parity_even(uint8_t(sum)) ? fl::PF : 0);
  c.set_reg<uint16_t>(k_rax, uint16_t(sum & 0xff0f));
  set_flags_materialized(c, f);
  advance(c, i);
}

void h_aam(Cpu& c, const Insn& i) {
  uint8_t base = uint8_t(i.imm);
  if (base == 0) throw fault(Vec::DE);
  uint8_t al = c.reg<uint8_t>(k_rax);
  uint8_t hi = uint8_t(al / base), lo = uint8_t(al % base);
  c.set_reg<uint8_t>(k_ah, hi);
  c.set_reg<uint8_t>(k_rax, lo);
  set_lazy<uint8_t>(c, FlagOp::Logic, lo, lo, lo);
  advance(c, i);
}

void h_aad(Cpu& c, const Insn& i) {
  uint8_t base = uint8_t(i.imm);
  uint8_t al = c.reg<uint8_t>(k_rax), ah = c.reg<uint8_t>(k_ah);
  uint8_t prod = uint8_t(ah * base);
  uint8_t r = uint8_t(al + prod);
  c.set_reg<uint16_t>(k_rax, r);
  set_lazy<uint8_t>(c, FlagOp::Add, al, prod, r);
  advance(c, i);
}

}  // namespace

void register_bcd(DispatchTable& t) {
  t.set(key1(0x27), h_daa);
  t.set(key1(0x2f), h_das);
  t.set(key1(0x37), h_aaa<false>);
  t.set(key1(0x3f), h_aaa<true>);
  t.set(key1(0xd4), h_aam);
  t.set(key1(0xd5), h_aad);
}

}  // namespace anykvm::soft::ex
