// Differential tests of MUL/IMUL (one-operand F6/F7 /4 /5, two-operand 0F AF,
// three-operand 69/6B) and DIV/IDIV (F6/F7 /6 /7) including #DE (divisor 0
// and quotient overflow: natively SIGFPE with trap number 0, in the engine
// vector 0 through the IDT; both must stop at the instruction). SDM: MUL/IMUL
// define CF and OF only; DIV/IDIV leave all six status flags undefined.
#include "asm.h"

namespace anykvm::difftest {
namespace {

constexpr uint8_t GRP3_8 = 0xf6, GRP3_V = 0xf7, IMUL_GV_EV = 0xaf, IMUL_IZ = 0x69, IMUL_IB = 0x6b;
enum Grp3 : unsigned { MUL = 4, IMUL = 5, DIV = 6, IDIV = 7 };
constexpr uint32_t k_mul_flags = fl::CF | fl::OF;

void put_mem(Case& c, unsigned bits, uint32_t v) {
  c.mem.assign(8, 0xee);
  for (unsigned i = 0; i < bits / 8; ++i) c.mem[i] = uint8_t(v >> (8 * i));
}

// The operand register for the one-operand forms: not the implicit ones.
unsigned src_reg(unsigned bits, uint32_t sel) {
  static const unsigned r8[] = {CL, BL, CH, BH, AH, DL, DH};  // AH/DL/DH alias the inputs: also legal
  static const unsigned r32[] = {ECX, EBX, EBP, ESI, EDI};
  return bits == 8 ? r8[sel % 7] : r32[sel % 5];
}

// One-operand MUL/IMUL: AL/AX/EAX times the operand (register or memory).
void gen_mul1(std::vector<Case>& out, Rng& rng, Grp3 ext) {
  uint32_t sel = 0;
  for (unsigned bits : {8u, 16u, 32u}) {
    for (auto [a, b] : operand_pairs(rng, bits, 1500)) {
      Case c = random_case(rng);
      bool mem = rng.below(8) == 0;
      unsigned s = src_reg(bits, sel++);
      if (bits == 8 && s == AH) s = CL;  // keep the grid meaningful: AH would alias AX's high byte
      Asm x;
      x.opc(bits, GRP3_8, GRP3_V);
      if (mem) x.mem(ext, 0), put_mem(c, bits, b);
      else x.rr(ext, s), set_reg(c, bits, s, b);
      x.into(c);
      set_reg(c, bits, EAX, a);
      c.defined_flags = k_mul_flags;
      out.push_back(std::move(c));
    }
  }
}

// IMUL r, r/m (0F AF) and IMUL r, r/m, imm (69 iz, 6B ib sign-extended).
void gen_imul23(std::vector<Case>& out, Rng& rng) {
  uint32_t sel = 0;
  for (unsigned bits : {16u, 32u}) {
    for (unsigned form = 0; form < 3; ++form) {
      for (auto [a, b] : operand_pairs(rng, bits, 800)) {
        Case c = random_case(rng);
        unsigned d, s;
        pick_two(bits, sel++, d, s);
        bool mem = rng.below(6) == 0;
        Asm x;
        x.osize(bits);
        if (form == 0) x.op({TWO_BYTE, IMUL_GV_EV});
        if (form == 1) x.op({IMUL_IZ});
        if (form == 2) x.op({IMUL_IB});
        if (mem) x.mem(d, 0), put_mem(c, bits, a);
        else x.rr(d, s), set_reg(c, bits, s, a);
        if (form == 0) set_reg(c, bits, d, b);
        if (form == 1) x.imm(bits, b);
        if (form == 2) x.i8(b);
        x.into(c);
        c.defined_flags = k_mul_flags;
        out.push_back(std::move(c));
      }
    }
  }
}

// DIV/IDIV: dividend in AX, DX:AX or EDX:EAX. Divisors include 0 and -1 and
// dividends include the most negative value, so #DE (divide by zero and
// quotient overflow) occurs often; half of the random dividends are reduced so
// that the quotient fits.
void gen_div(std::vector<Case>& out, Rng& rng, Grp3 ext) {
  uint32_t sel = 0;
  for (unsigned bits : {8u, 16u, 32u}) {
    const uint32_t m = width_mask(bits);
    std::vector<uint32_t> divisors = edges(bits);
    for (int i = 0; i < 24; ++i) divisors.push_back(rng.u32() & m);
    std::vector<uint64_t> dividends;  // 2*bits wide
    for (uint32_t hi : edges(bits))
      for (uint32_t lo : {0u, 1u, sign_bit(bits), m}) dividends.push_back(uint64_t(hi) << bits | lo);
    for (int i = 0; i < 40; ++i) dividends.push_back((uint64_t(rng.u32()) << 32 | rng.u32()) & ((uint64_t(m) << bits) | m));
    for (uint32_t dv : divisors) {
      for (uint64_t dd : dividends) {
        if (rng.coin()) {  // make the quotient fit: high half below the divisor (unsigned view)
          uint32_t hi = uint32_t(dd >> bits);
          if (dv) dd = (uint64_t(hi % dv) << bits) | (dd & m);
        }
        Case c = random_case(rng);
        unsigned s = src_reg(bits, sel++);
        if (bits == 8 && s == AH) s = CL;
        if (bits != 8 && s == EDX) s = ECX;
        bool mem = rng.below(8) == 0;
        Asm x;
        x.opc(bits, GRP3_8, GRP3_V);
        if (mem) x.mem(ext, 0), put_mem(c, bits, dv);
        else x.rr(ext, s), set_reg(c, bits, s, dv);
        x.into(c);
        if (bits == 8) {
          set_reg(c, 16, EAX, uint32_t(dd));
        } else {
          set_reg(c, bits, EAX, uint32_t(dd) & m);
          set_reg(c, bits, EDX, uint32_t(dd >> bits) & m);
        }
        c.defined_flags = 0;  // SDM: CF, OF, SF, ZF, AF, PF undefined
        out.push_back(std::move(c));
      }
    }
  }
}

// 8-bit DIV/IDIV: every divisor with random dividends, and every dividend
// (AX) with random divisors.
void gen_div8(std::vector<Case>& out, Rng& rng, Grp3 ext) {
  for (int pass = 0; pass < 2; ++pass)
    for (uint32_t v = 0; v < (pass ? 65536u : 256u); ++v)
      for (int k = 0; k < (pass ? 1 : 48); ++k) {
        if (pass && (v & 3) != 0) continue;  // a quarter of the dividends
        const uint32_t dv = pass ? rng.u32() & 0xff : v, ax = pass ? v : rng.u32() & 0xffff;
        Case c = random_case(rng);
        Asm x;
        x.op({GRP3_8}).rr(ext, CL);
        x.into(c);
        set_reg(c, 8, CL, dv);
        set_reg(c, 16, EAX, ax);
        c.defined_flags = 0;  // SDM: all six undefined
        out.push_back(std::move(c));
      }
}

CPU_DIFF_FAMILY_U(MulDiv, Div8, 0, [](auto& v, Rng& r) { gen_div8(v, r, DIV); })
CPU_DIFF_FAMILY_U(MulDiv, Idiv8, 0, [](auto& v, Rng& r) { gen_div8(v, r, IDIV); })
CPU_DIFF_FAMILY_U(MulDiv, Mul, 16, [](auto& v, Rng& r) { gen_mul1(v, r, MUL); })
CPU_DIFF_FAMILY_U(MulDiv, Imul1, 16, [](auto& v, Rng& r) { gen_mul1(v, r, IMUL); })
CPU_DIFF_FAMILY_U(MulDiv, Imul23, 16, gen_imul23)
CPU_DIFF_FAMILY_U(MulDiv, Div, 16, [](auto& v, Rng& r) { gen_div(v, r, DIV); })
CPU_DIFF_FAMILY_U(MulDiv, Idiv, 16, [](auto& v, Rng& r) { gen_div(v, r, IDIV); })

}  // namespace
}  // namespace anykvm::difftest
