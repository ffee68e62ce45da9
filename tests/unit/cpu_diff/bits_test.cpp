// Differential tests of the bit instructions: BT/BTS/BTR/BTC (SDM "BT":
// register destination with the offset taken modulo the width; memory
// destination with a register offset that addresses bytes beyond the operand,
// negative offsets included; imm8 forms; LOCK on the writing memory forms),
// BSF/BSR (zero source: the SDM leaves the destination undefined; it is
// compared as defined when the host kept it unchanged, as AMD documents, else in
// the undefined group), and BSWAP (16-bit operand: result undefined).
#include "asm.h"

namespace anykvm::difftest {
namespace {

constexpr uint8_t BT_EV_GV = 0xa3, BTS_EV_GV = 0xab, BTR_EV_GV = 0xb3, BTC_EV_GV = 0xbb, GRP8 = 0xba;
constexpr uint8_t BSF = 0xbc, BSR = 0xbd, BSWAP_R = 0xc8;
constexpr uint32_t BT_WINDOW = 1024;
constexpr uint32_t BT_OPERAND_AT = 512;  // memory operand in the middle of the window
constexpr uint32_t k_bt_flags = fl::CF | fl::ZF;  // SDM: CF = the bit, ZF unaffected, OF SF AF PF undefined

void random_window(Case& c, Rng& rng, uint32_t size) {
  c.mem.resize(size);
  for (auto& b : c.mem) b = uint8_t(rng.u32());
}

void gen_bt(std::vector<Case>& out, Rng& rng) {
  static const uint8_t reg_ops[] = {BT_EV_GV, BTS_EV_GV, BTR_EV_GV, BTC_EV_GV};
  uint32_t sel = 0;
  for (unsigned which = 0; which < 4; ++which) {
    const unsigned grp8_ext = 4 + which;  // 0F BA /4 BT, /5 BTS, /6 BTR, /7 BTC
    for (unsigned bits : {16u, 32u}) {
      for (int form = 0; form < 5; ++form) {  // 0 reg,reg 1 reg,imm 2 mem,reg 3 mem,imm 4 lock mem,reg
        if (form == 4 && which == 0) continue;  // LOCK BT is #UD
        for (int i = 0; i < 400; ++i) {
          Case c = random_case(rng);
          unsigned d, s;
          pick_two(bits, sel++, d, s);
          uint32_t offset = rng.u32();
          if (i < 64) offset = uint32_t(i) + (rng.coin() ? bits : 0);  // every bit, plus wrapped
          Asm x;
          if (form == 4) x.op({LOCK});
          x.osize(bits);
          if (form == 0 || form == 2 || form == 4) x.op({TWO_BYTE, reg_ops[which]});
          else x.op({TWO_BYTE, GRP8});
          if (form == 0) x.rr(s, d);
          if (form == 1) x.rr(grp8_ext, d);
          if (form == 2 || form == 4) x.mem(s, BT_OPERAND_AT);
          if (form == 3) x.mem(grp8_ext, BT_OPERAND_AT);
          if (form == 1 || form == 3) x.i8(offset);
          if (form == 2 || form == 4) {
            // Signed register offset reaching +-4000 bits around the operand (bytes
            // beyond it in both directions), or within the operand.
            int32_t bitoff = rng.coin() ? int32_t(rng.below(8000)) - 4000 : int32_t(rng.below(bits));
            if (bits == 16) bitoff = std::clamp(bitoff, -4000, 4000);
            offset = uint32_t(bitoff);
            random_window(c, rng, BT_WINDOW);
          }
          if (form == 0 || form == 2 || form == 4) set_reg(c, bits, s, offset);
          x.into(c);
          c.defined_flags = k_bt_flags;
          out.push_back(std::move(c));
        }
      }
    }
  }
}
CPU_DIFF_FAMILY_U(Bits, BtBtsBtrBtc, BT_WINDOW, gen_bt)

void gen_bsf_bsr(std::vector<Case>& out, Rng& rng) {
  uint32_t sel = 0;
  for (uint8_t opc : {BSF, BSR}) {
    for (unsigned bits : {16u, 32u}) {
      std::vector<uint32_t> vals = edges(bits);
      for (unsigned k = 0; k < bits; ++k) vals.push_back(1u << k), vals.push_back((1u << k) | (rng.u32() & ((1u << k) - 1)));
      for (int i = 0; i < 300; ++i) vals.push_back(rng.u32() >> rng.below(32));
      for (int i = 0; i < 40; ++i) vals.push_back(0);
      for (uint32_t v : vals) {
        v &= width_mask(bits);
        Case c = random_case(rng);
        unsigned d, s;
        pick_two(bits, sel++, d, s);
        bool mem = rng.below(6) == 0;
        Asm x;
        x.osize(bits).op({TWO_BYTE, opc});  // never with F3: that is TZCNT/LZCNT on this host
        if (mem) {
          x.mem(d, 0);
          c.mem.assign(8, 0);
          for (unsigned b = 0; b < bits / 8; ++b) c.mem[b] = uint8_t(v >> (8 * b));
        } else {
          x.rr(d, s), set_reg(c, bits, s, v);
        }
        x.into(c);
        c.defined_flags = fl::ZF;  // SDM: CF OF SF AF PF undefined
        if (v == 0) c.defined_if_host_keeps = uint8_t(1u << d);
        out.push_back(std::move(c));
      }
    }
  }
}
CPU_DIFF_FAMILY_U(Bits, BsfBsr, 16, gen_bsf_bsr)

// Says which way BsfBsr compares the zero-source destination on this host.
TEST(CpuDiffBits, HostKeepsBsfBsrDestinationOnZeroSource) {
  CPU_DIFF_REQUIRE_NATIVE();
  std::vector<Case> cases;
  for (uint8_t opc : {BSF, BSR})
    for (unsigned bits : {16u, 32u}) {
      Case c;
      c.gpr = {0x12345678, 0, 0x9abcdef0, 0, 0, 0, 0, 0};
      Asm x;
      x.osize(bits).op({TWO_BYTE, opc}).rr(EAX, ECX);  // bsf/bsr eax, ecx with ecx = 0
      x.into(c);
      cases.push_back(c);
    }
  auto out = run_one_side(native_runner(), cases, 0);
  bool kept = true;
  for (const Outcome& o : out) kept = kept && o.gpr[EAX] == 0x12345678 && (o.eflags & fl::ZF);
  if (!kept) GTEST_SKIP() << "this host changes the BSF/BSR destination for a zero source: BsfBsr compares it "
                             "in CpuDiffUndefined.Bits_BsfBsr only";
  std::printf("[cpu_diff] host keeps the BSF/BSR destination for a zero source: compared as defined\n");
}

void gen_bswap(std::vector<Case>& out, Rng& rng) {
  for (unsigned r = 0; r < 8; ++r) {
    if (r == ESP) continue;
    for (unsigned bits : {32u, 16u}) {
      for (int i = 0; i < 64; ++i) {
        Case c = random_case(rng);
        Asm x;
        x.osize(bits).op({TWO_BYTE, uint8_t(BSWAP_R + r)});
        x.into(c);
        if (bits == 16) c.undefined_regs = uint8_t(1u << r);  // SDM: "the result is undefined"
        out.push_back(std::move(c));
      }
    }
  }
}
CPU_DIFF_FAMILY_U(Bits, Bswap, 0, gen_bswap)

}  // namespace
}  // namespace anykvm::difftest
