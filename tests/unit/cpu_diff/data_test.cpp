// Differential tests of data movement and conditions: MOVZX/MOVSX, XCHG,
// CMOVcc, SETcc, Jcc (rel8 and rel32) with JECXZ/JCXZ/LOOP/LOOPE/LOOPNE, and the
// exchange-and-operate instructions XADD, CMPXCHG, CMPXCHG8B (register and
// memory forms, with LOCK). Conditions run over every combination of the five
// flags they read (SDM vol. 1, appendix B, condition codes).
#include "asm.h"

namespace anykvm::difftest {
namespace {

constexpr uint8_t MOVZX_B = 0xb6, MOVZX_W = 0xb7, MOVSX_B = 0xbe, MOVSX_W = 0xbf;
constexpr uint8_t XCHG_EB = 0x86, XCHG_EV = 0x87, XCHG_EAX_R = 0x90;
constexpr uint8_t CMOV_CC = 0x40, SET_CC = 0x90, JCC_REL8 = 0x70, JCC_REL32 = 0x80;
constexpr uint8_t LOOPNE = 0xe0, LOOPE = 0xe1, LOOP = 0xe2, JECXZ = 0xe3;
constexpr uint8_t XADD_B = 0xc0, XADD_V = 0xc1, CMPXCHG_B = 0xb0, CMPXCHG_V = 0xb1, GRP9 = 0xc7;
constexpr uint8_t MOV_EAX_IMM = 0xb8;
constexpr unsigned CMPXCHG8B_EXT = 1;

void put_mem(Case& c, unsigned bits, uint32_t off, uint32_t v) {
  if (c.mem.size() < off + 4) c.mem.resize(off + 4, 0xee);
  for (unsigned i = 0; i < bits / 8; ++i) c.mem[off + i] = uint8_t(v >> (8 * i));
}

// The five flags conditions read, from a 5-bit index, plus a random AF.
uint32_t cond_flags(Rng& rng, uint32_t k) {
  return fl::FIXED1 | fl::IF | ((k & 1) ? fl::CF : 0) | ((k & 2) ? fl::PF : 0) | ((k & 4) ? fl::ZF : 0) |
         ((k & 8) ? fl::SF : 0) | ((k & 16) ? fl::OF : 0) | (rng.coin() ? fl::AF : 0);
}

void gen_movx(std::vector<Case>& out, Rng& rng) {
  uint32_t sel = 0;
  for (uint8_t opc : {MOVZX_B, MOVZX_W, MOVSX_B, MOVSX_W}) {
    unsigned src_bits = (opc == MOVZX_B || opc == MOVSX_B) ? 8 : 16;
    for (unsigned dst_bits : {16u, 32u}) {
      std::vector<uint32_t> vals = edges(src_bits);
      for (int i = 0; i < 80; ++i) vals.push_back(rng.u32() & width_mask(src_bits));
      for (uint32_t v : vals) {
        Case c = random_case(rng);
        unsigned d, s;
        pick_two(src_bits == 8 ? 8 : 16, sel++, s, d);
        if (d == ESP || (src_bits == 8 && d >= 4)) d = (d + 1) % 4;  // a 16/32-bit destination
        if (src_bits == 8 && (s & 3) == d) s ^= 4;                   // keep the source apart
        Asm x;
        x.osize(dst_bits).op({TWO_BYTE, opc});
        if (rng.below(5) == 0) x.mem(d, 0), put_mem(c, src_bits, 0, v);
        else x.rr(d, s), set_reg(c, src_bits, s, v);
        x.into(c);
        out.push_back(std::move(c));
      }
    }
  }
}
CPU_DIFF_FAMILY(Data, MovzxMovsx, 16, gen_movx)

void gen_xchg(std::vector<Case>& out, Rng& rng) {
  uint32_t sel = 0;
  for (unsigned bits : {8u, 16u, 32u})
    for (int i = 0; i < 200; ++i) {
      Case c = random_case(rng);
      unsigned a, b;
      pick_two(bits, sel++, a, b);
      Asm x;
      switch (i % 4) {
        case 0: x.opc(bits, XCHG_EB, XCHG_EV).rr(a, b); break;
        case 1: x.opc(bits, XCHG_EB, XCHG_EV).mem(a, 0), put_mem(c, bits, 0, rng.u32()); break;
        case 2: x.op({LOCK}).opc(bits, XCHG_EB, XCHG_EV).mem(a, 0), put_mem(c, bits, 0, rng.u32()); break;
        case 3:
          if (bits == 8) x.opc(8, XCHG_EB, XCHG_EV).rr(a, a);  // xchg r8, itself
          else x.osize(bits).op({uint8_t(XCHG_EAX_R + (b == ESP ? unsigned(EBP) : b))});
          break;
      }
      x.into(c);
      out.push_back(std::move(c));
    }
}
CPU_DIFF_FAMILY(Data, Xchg, 16, gen_xchg)

void gen_cmov(std::vector<Case>& out, Rng& rng) {
  uint32_t sel = 0;
  for (unsigned cc = 0; cc < 16; ++cc)
    for (unsigned bits : {16u, 32u})
      for (uint32_t k = 0; k < 32; ++k)
        for (bool mem : {false, true}) {
          Case c = random_case(rng);
          c.eflags = cond_flags(rng, k);
          unsigned d, s;
          pick_two(bits, sel++, d, s);
          Asm x;
          x.osize(bits).op({TWO_BYTE, uint8_t(CMOV_CC + cc)});
          if (mem) x.mem(d, 0), put_mem(c, 32, 0, rng.u32());
          else x.rr(d, s);
          x.into(c);
          out.push_back(std::move(c));
        }
}
CPU_DIFF_FAMILY(Data, Cmovcc, 16, gen_cmov)

void gen_setcc(std::vector<Case>& out, Rng& rng) {
  for (unsigned cc = 0; cc < 16; ++cc)
    for (uint32_t k = 0; k < 32; ++k)
      for (bool mem : {false, true}) {
        Case c = random_case(rng);
        c.eflags = cond_flags(rng, k);
        Asm x;
        x.op({TWO_BYTE, uint8_t(SET_CC + cc)});
        if (mem) x.mem(0, 0);
        else x.rr(0, k & 7);  // every 8-bit register AL..BH
        x.into(c);
        out.push_back(std::move(c));
      }
}
CPU_DIFF_FAMILY(Data, Setcc, 16, gen_setcc)

// jcc over "mov eax, imm32": EAX tells whether the branch was taken.
void gen_jcc(std::vector<Case>& out, Rng& rng) {
  const uint8_t skip = 5;  // length of mov eax, imm32
  for (unsigned cc = 0; cc < 16; ++cc)
    for (uint32_t k = 0; k < 32; ++k)
      for (bool near : {false, true}) {
        Case c = random_case(rng);
        c.eflags = cond_flags(rng, k);
        Asm x;
        if (near) x.op({TWO_BYTE, uint8_t(JCC_REL32 + cc)}).d32(skip);
        else x.op({uint8_t(JCC_REL8 + cc), skip});
        x.op({MOV_EAX_IMM}).d32(0x600df00d);
        x.into(c);
        out.push_back(std::move(c));
      }
  // JECXZ/JCXZ and LOOP/LOOPE/LOOPNE (ECX/CX decremented, ZF read by LOOPE/NE).
  for (uint8_t op : {JECXZ, LOOP, LOOPE, LOOPNE})
    for (bool addr16 : {false, true})
      for (uint32_t ecx : {0u, 1u, 2u, 0x10000u, 0x10001u, 0xffffffffu, rng.u32()})
        for (bool zf : {false, true}) {
          Case c = random_case(rng);
          c.gpr[ECX] = ecx;
          c.eflags = (c.eflags & ~fl::ZF) | (zf ? fl::ZF : 0);
          Asm x;
          if (addr16) x.op({ASIZE});  // count register CX
          x.op({op, skip}).op({MOV_EAX_IMM}).d32(0x600df00d);
          x.into(c);
          out.push_back(std::move(c));
        }
}
CPU_DIFF_FAMILY(Data, JccLoop, 0, gen_jcc)

// XADD and CMPXCHG: ALU-like flags (ADD resp. CMP), all defined.
void gen_xadd_cmpxchg(std::vector<Case>& out, Rng& rng) {
  uint32_t sel = 0;
  for (bool cmpxchg : {false, true})
    for (unsigned bits : {8u, 16u, 32u})
      for (auto [a, b] : operand_pairs(rng, bits, 200)) {
        if (bits == 8 && rng.below(32) != 0) continue;  // a sample of the 8-bit grid
        for (int form = 0; form < 3; ++form) {           // reg, mem, lock mem
          if (form && rng.below(3) != 0) continue;
          Case c = random_case(rng);
          unsigned d, s;
          pick_two(bits, sel++, d, s);
          // CMPXCHG: keep the operands apart from the accumulator.
          const unsigned acc = EAX, alt_d = bits == 8 ? unsigned(BL) : unsigned(EBX),
                         alt_s = bits == 8 ? unsigned(CL) : unsigned(ECX);
          if (cmpxchg && d == acc) d = alt_d;
          if (cmpxchg && s == acc) s = alt_s;
          if (d == s) s = bits == 8 ? unsigned(DH) : unsigned(EDI);
          Asm x;
          if (form == 2) x.op({LOCK});
          x.osize(bits).op({TWO_BYTE, uint8_t(cmpxchg ? (bits == 8 ? CMPXCHG_B : CMPXCHG_V)
                                                      : (bits == 8 ? XADD_B : XADD_V))});
          if (form) x.mem(s, 0), put_mem(c, bits, 0, a);
          else x.rr(s, d), set_reg(c, bits, d, a);
          set_reg(c, bits, s, b);
          // CMPXCHG compares the accumulator with the destination: equal half the time.
          if (cmpxchg) set_reg(c, bits, EAX, rng.coin() ? a : rng.u32());
          x.into(c);
          out.push_back(std::move(c));
        }
      }
}
CPU_DIFF_FAMILY(Data, XaddCmpxchg, 16, gen_xadd_cmpxchg)

void gen_cmpxchg8b(std::vector<Case>& out, Rng& rng) {
  for (int i = 0; i < 600; ++i) {
    Case c = random_case(rng);
    uint32_t lo = rng.u32(), hi = rng.u32();
    put_mem(c, 32, 0, lo);
    put_mem(c, 32, 4, hi);
    switch (i % 4) {  // equal, low differs, high differs, both differ
      case 0: c.gpr[EAX] = lo, c.gpr[EDX] = hi; break;
      case 1: c.gpr[EDX] = hi; break;
      case 2: c.gpr[EAX] = lo; break;
      default: break;
    }
    Asm x;
    if (i & 4) x.op({LOCK});
    x.op({TWO_BYTE, GRP9}).mem(CMPXCHG8B_EXT, 0);
    x.into(c);
    out.push_back(std::move(c));  // SDM: ZF set by the compare, other flags unaffected
  }
}
CPU_DIFF_FAMILY(Data, Cmpxchg8b, 16, gen_cmpxchg8b)

}  // namespace
}  // namespace anykvm::difftest
