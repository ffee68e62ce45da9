// Decimal arithmetic: DAA, DAS, AAA, AAS, AAM, AAD (SDM vol. 2 operation
// sections). These are invalid in 64-bit mode, so the host cannot run them for
// us; undefined flags are chosen as follows: DAA/DAS OF = 0; AAA/AAS SF/ZF/PF
// from the resulting AL and OF = 0; AAM like a logical op on AL (OF = AF = CF
// = 0); AAD like the ADD of AL + AH * imm8 it performs (what hardware reports).
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
  set_flags_materialized(c, szp(al) | (cf ? fl::CF : 0) | (af ? fl::AF : 0));
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
  set_flags_materialized(c, szp(al) | (cf ? fl::CF : 0) | (af ? fl::AF : 0));
  advance(c, i);
}

// AAA: AX += 106h when adjusting (SDM AAA operation); AAS: AX -= 6, AH -= 1.
template <bool SUB>
void h_aaa(Cpu& c, const Insn& i) {
  uint32_t in = lazy_arith_flags(c.lf);
  uint16_t ax = c.reg<uint16_t>(k_rax);
  bool adj = (ax & 0xf) > 9 || (in & fl::AF);
  if (adj) {
    if (SUB) {
      ax = uint16_t(ax - 6);
      ax = uint16_t(ax - 0x100);
    } else {
      ax = uint16_t(ax + 0x106);
    }
  }
  ax &= 0xff0f;
  c.set_reg<uint16_t>(k_rax, ax);
  set_flags_materialized(c, szp(uint8_t(ax)) | (adj ? (fl::CF | fl::AF) : 0));
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
