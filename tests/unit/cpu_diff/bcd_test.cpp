// Differential tests of the BCD adjustments DAA/DAS/AAA/AAS/AAM/AAD (invalid in
// 64-bit mode: natively they run in the compatibility-mode segment like every
// case), LAHF/SAHF and the accumulator sign extensions CBW/CWDE/CWD/CDQ.
// Exhaustive over AL with every CF/AF input (DAA/DAS), over AL x AH-samples
// (AAA/AAS), over AL x imm8 (AAM, imm 0 is #DE) and AL x AH (AAD with base 10,
// plus random bases). Defined flags per the SDM entry of each instruction.
#include "asm.h"

namespace anykvm::difftest {
namespace {

constexpr uint8_t DAA = 0x27, DAS = 0x2f, AAA = 0x37, AAS = 0x3f, AAM = 0xd4, AAD = 0xd5;
constexpr uint8_t SAHF = 0x9e, LAHF = 0x9f, CBW_CWDE = 0x98, CWD_CDQ = 0x99;

Case acc_case(Rng& rng, std::initializer_list<uint8_t> code, uint32_t ax, uint32_t flags_in) {
  Case c = random_case(rng);
  c.code = code;
  set_reg(c, 16, EAX, ax);
  c.eflags = (c.eflags & ~(fl::CF | fl::AF)) | flags_in;
  return c;
}

void gen_daa_das(std::vector<Case>& out, Rng& rng) {
  for (uint8_t op : {DAA, DAS})
    for (uint32_t al = 0; al < 256; ++al)
      for (uint32_t f : {0u, fl::CF, fl::AF, fl::CF | fl::AF}) {
        Case c = acc_case(rng, {op}, (rng.u32() & 0xff00) | al, f);
        c.defined_flags = fl::STATUS & ~fl::OF;  // SDM: OF undefined
        out.push_back(std::move(c));
      }
}
CPU_DIFF_FAMILY_U(Bcd, DaaDas, 0, gen_daa_das)

void gen_aaa_aas(std::vector<Case>& out, Rng& rng) {
  for (uint8_t op : {AAA, AAS})
    for (uint32_t al = 0; al < 256; ++al)
      for (uint32_t ah : {0x00u, 0x09u, 0x7fu, 0xffu, rng.u32() & 0xff})
        for (uint32_t f : {0u, fl::CF, fl::AF, fl::CF | fl::AF}) {
          Case c = acc_case(rng, {op}, ah << 8 | al, f);
          c.defined_flags = fl::AF | fl::CF;  // SDM: OF SF ZF PF undefined
          out.push_back(std::move(c));
        }
}
CPU_DIFF_FAMILY_U(Bcd, AaaAas, 0, gen_aaa_aas)

void gen_aam(std::vector<Case>& out, Rng& rng) {
  for (uint32_t base = 0; base < 256; ++base)
    for (uint32_t al = 0; al < 256; ++al) {
      Case c = acc_case(rng, {AAM, uint8_t(base)}, (rng.u32() & 0xff00) | al, rng.u32() & (fl::CF | fl::AF));
      c.defined_flags = fl::SF | fl::ZF | fl::PF;  // SDM: OF AF CF undefined; base 0 is #DE
      out.push_back(std::move(c));
    }
}
CPU_DIFF_FAMILY_U(Bcd, Aam, 0, gen_aam)

void gen_aad(std::vector<Case>& out, Rng& rng) {
  for (uint32_t ax = 0; ax < 0x10000; ++ax) {
    Case c = acc_case(rng, {AAD, 10}, ax, rng.u32() & (fl::CF | fl::AF));
    c.defined_flags = fl::SF | fl::ZF | fl::PF;  // SDM: OF AF CF undefined
    out.push_back(std::move(c));
  }
  for (int i = 0; i < 8192; ++i) {
    Case c = acc_case(rng, {AAD, uint8_t(rng.u32())}, rng.u32(), rng.u32() & (fl::CF | fl::AF));
    c.defined_flags = fl::SF | fl::ZF | fl::PF;
    out.push_back(std::move(c));
  }
}
CPU_DIFF_FAMILY_U(Bcd, Aad, 0, gen_aad)

// LAHF: every combination of the five flags it copies; SAHF: every AH value.
void gen_lahf_sahf(std::vector<Case>& out, Rng& rng) {
  for (uint32_t f = 0; f < 64; ++f) {
    Case c = random_case(rng);
    c.code = {LAHF};
    c.eflags = fl::FIXED1 | fl::IF | ((f & 1) ? fl::CF : 0) | ((f & 2) ? fl::PF : 0) | ((f & 4) ? fl::AF : 0) |
               ((f & 8) ? fl::ZF : 0) | ((f & 16) ? fl::SF : 0) | ((f & 32) ? fl::OF : 0);
    out.push_back(std::move(c));
  }
  for (uint32_t ah = 0; ah < 256; ++ah)
    for (int k = 0; k < 2; ++k) {
      Case c = random_case(rng);
      c.code = {SAHF};
      set_reg(c, 8, AH, ah);
      out.push_back(std::move(c));
    }
}
CPU_DIFF_FAMILY(Bcd, LahfSahf, 0, gen_lahf_sahf)

void gen_sign_extend(std::vector<Case>& out, Rng& rng) {
  for (unsigned bits : {16u, 32u})
    for (uint8_t op : {CBW_CWDE, CWD_CDQ}) {
      std::vector<uint32_t> vals = edges(32);
      for (uint32_t v : edges(16)) vals.push_back(v);
      for (int i = 0; i < 100; ++i) vals.push_back(rng.u32());
      for (uint32_t v : vals) {
        Case c = random_case(rng);
        Asm x;
        x.osize(bits).op({op}).into(c);
        c.gpr[EAX] = v;
        out.push_back(std::move(c));
      }
    }
}
CPU_DIFF_FAMILY(Bcd, CbwCwdeCwdCdq, 0, gen_sign_extend)

}  // namespace
}  // namespace anykvm::difftest
