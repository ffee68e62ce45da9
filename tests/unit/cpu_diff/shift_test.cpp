// Differential tests of the shift/rotate group (C0/C1 ib, D0/D1 by 1, D2/D3 by
// CL: ROL ROR RCL RCR SHL SHR SAR, and the /6 alias of SHL) and of SHLD/SHRD
// (0F A4/A5/AC/AD). Counts: every count 0-31 (the masked range) plus
// width, >width and unmasked values (32, 33, 63, 255) for every 8-bit value;
// edges and random values for 16/32 bits. Defined flags per the SDM ("SAL/SAR/
// SHL/SHR", "RCL/RCR/ROL/ROR", "SHLD", "SHRD"): masked count 0 changes no
// flags; OF only for a masked count of 1; AF undefined for shifts; CF undefined
// for SHL/SHR when the count is >= the width; SHLD/SHRD 16-bit with count > 16
// leave the result and all flags undefined.
#include "asm.h"
#include "sdm_flags.h"

namespace anykvm::difftest {
namespace {

constexpr uint8_t GRP2_IB8 = 0xc0, GRP2_IBV = 0xc1, GRP2_1_8 = 0xd0, GRP2_1_V = 0xd1, GRP2_CL8 = 0xd2,
                  GRP2_CLV = 0xd3;
enum class CountForm : uint8_t { Imm, One, Cl };

void put_mem(Case& c, unsigned bits, uint32_t v) {
  c.mem.assign(8, 0xee);
  for (unsigned i = 0; i < bits / 8; ++i) c.mem[i] = uint8_t(v >> (8 * i));
}

Case shift_case(Rng& rng, Grp2 ext, unsigned bits, CountForm form, uint32_t v, uint32_t count, bool mem, uint32_t sel) {
  Case c = random_case(rng);
  static const unsigned r8[] = {AL, DL, BL, AH, DH, BH};  // not CL: the count lives there
  static const unsigned r32[] = {EAX, EDX, EBX, EBP, ESI, EDI};
  unsigned d = bits == 8 ? r8[sel % 6] : r32[sel % 6];
  Asm x;
  if (form == CountForm::One) count = 1;
  switch (form) {
    case CountForm::Imm: x.opc(bits, GRP2_IB8, GRP2_IBV); break;
    case CountForm::One: x.opc(bits, GRP2_1_8, GRP2_1_V); break;
    case CountForm::Cl: x.opc(bits, GRP2_CL8, GRP2_CLV); break;
  }
  if (mem) x.mem(ext, 0), put_mem(c, bits, v);
  else x.rr(ext, d), set_reg(c, bits, d, v);
  if (form == CountForm::Imm) x.i8(count);
  if (form == CountForm::Cl) set_reg(c, 8, CL, count);
  x.into(c);
  c.defined_flags = shift_defined_flags(ext, bits, count);
  return c;
}

std::vector<uint32_t> counts(unsigned bits) {
  std::vector<uint32_t> v;
  for (uint32_t k = 0; k <= 33; ++k) v.push_back(k);
  for (uint32_t k : {bits - 1, bits, bits + 1, 2 * bits, 63u, 64u, 65u, 127u, 128u, 224u, 255u}) v.push_back(k & 0xff);
  return v;
}

void gen_shift(std::vector<Case>& out, Rng& rng, std::initializer_list<Grp2> exts) {
  uint32_t sel = 0;
  for (Grp2 ext : exts) {
    for (unsigned bits : {8u, 16u, 32u}) {
      std::vector<uint32_t> vals;
      if (bits == 8) {
        for (uint32_t v = 0; v < 256; ++v) vals.push_back(v);
      } else {
        vals = edges(bits);
        for (int i = 0; i < 60; ++i) vals.push_back(rng.u32() & width_mask(bits));
      }
      for (uint32_t v : vals) {
        for (uint32_t n : counts(bits)) {
          // Each (value, count) once, through CL or imm8 at random; memory forms sampled.
          CountForm form = rng.coin() ? CountForm::Cl : CountForm::Imm;
          bool mem = rng.below(10) == 0;
          out.push_back(shift_case(rng, ext, bits, form, v, n, mem, sel++));
        }
        out.push_back(shift_case(rng, ext, bits, CountForm::One, v, 1, rng.below(10) == 0, sel++));
      }
    }
  }
}

CPU_DIFF_FAMILY_U(Shift, ShlShrSar, 16, [](auto& v, Rng& r) { gen_shift(v, r, {SHL, SHR, SAR}); })
CPU_DIFF_FAMILY_U(Shift, RolRor, 16, [](auto& v, Rng& r) { gen_shift(v, r, {ROL, ROR}); })
CPU_DIFF_FAMILY_U(Shift, RclRcr, 16, [](auto& v, Rng& r) { gen_shift(v, r, {RCL, RCR}); })
// D0-D3/C0/C1 /6: not in the SDM tables, behaves as SHL on Intel and AMD parts.
CPU_DIFF_FAMILY_U(Shift, SalAlias6, 16, [](auto& v, Rng& r) {
  std::vector<Case> all;
  gen_shift(all, r, {SAL_ALIAS});
  for (size_t i = 0; i < all.size(); i += 4) v.push_back(std::move(all[i]));  // a quarter is plenty
})

// SHLD/SHRD r/m, r, imm8|CL (16 and 32 bits).
void gen_double_shift(std::vector<Case>& out, Rng& rng) {
  constexpr uint8_t SHLD_IB = 0xa4, SHLD_CL = 0xa5, SHRD_IB = 0xac, SHRD_CL = 0xad;
  static const unsigned r32[] = {EAX, EDX, EBX, EBP, ESI, EDI};  // not ECX: CL is the count
  uint32_t sel = 0;
  for (bool left : {true, false}) {
    for (unsigned bits : {16u, 32u}) {
      std::vector<std::pair<uint32_t, uint32_t>> pairs = operand_pairs(rng, bits, 120);
      for (size_t i = 0; i < pairs.size(); i += 3) {  // a third of the edge grid, all counts for each
        auto [a, b] = pairs[i];
        for (uint32_t n : counts(bits)) {
          Case c = random_case(rng);
          unsigned d = r32[sel % 6], s = r32[(sel / 6 + 1 + sel % 6) % 6];
          if (s == d) s = r32[(sel % 6 + 1) % 6];
          ++sel;
          uint32_t masked = n & k_count_mask;
          bool undefined_result = bits == 16 && masked > 16;  // SDM: result and flags undefined
          bool mem = !undefined_result && rng.below(8) == 0;
          bool cl = rng.coin();
          Asm x;
          x.osize(bits).op({TWO_BYTE, uint8_t(left ? (cl ? SHLD_CL : SHLD_IB) : (cl ? SHRD_CL : SHRD_IB))});
          if (mem) x.mem(s, 0), put_mem(c, bits, a);
          else x.rr(s, d), set_reg(c, bits, d, a);
          if (!cl) x.i8(n);
          else set_reg(c, 8, CL, n);
          set_reg(c, bits, s, b);
          x.into(c);
          if (masked == 0) c.defined_flags = fl::STATUS;
          else if (undefined_result) c.defined_flags = 0, c.undefined_regs = uint8_t(1u << d);
          else c.defined_flags = fl::STATUS & ~fl::AF & ~(masked == 1 ? 0 : fl::OF);
          out.push_back(std::move(c));
        }
      }
    }
  }
}
CPU_DIFF_FAMILY_U(Shift, ShldShrd, 16, gen_double_shift)

}  // namespace
}  // namespace anykvm::difftest
