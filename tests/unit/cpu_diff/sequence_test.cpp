// Differential tests of short instruction sequences (2-6 register-form
// instructions), so that flags flow from one instruction to the next inside
// the engine (lazy flags: INC/DEC keeping CF, count-0 shifts keeping
// everything, ADC/SBB/RCL/RCR/CMC reading CF, SETcc/CMOVcc/Jcc/LAHF/DAA reading
// flags an earlier instruction produced) instead of coming from POPF.
// The generator tracks which status flags are defined after each instruction
// (SDM per instruction) and only emits a flag reader when what it reads is
// defined, so every register result stays defined; the flags left undefined at
// the end are compared in the CpuDiffUndefined group.
#include "asm.h"
#include "sdm_flags.h"

namespace anykvm::difftest {
namespace {

struct Step {
  std::vector<uint8_t> code;
  std::vector<uint8_t> relocs;  // window displacements in `code` (memory steps)
  uint32_t reads = 0;      // flags the instruction consumes
  uint32_t defines = 0;    // flags it writes with a defined value
  uint32_t undefines = 0;  // flags it leaves undefined
};

unsigned any_reg(Rng& rng) {
  static const unsigned r[] = {EAX, ECX, EDX, EBX, EBP, ESI, EDI};
  return r[rng.below(7)];
}

Step random_step(Rng& rng) {
  Step s;
  Asm x;
  const unsigned bits = std::array<unsigned, 3>{8, 16, 32}[rng.below(3)];
  const unsigned a = bits == 8 ? rng.below(8) : any_reg(rng), b = bits == 8 ? rng.below(8) : any_reg(rng);
  switch (rng.below(16)) {
    case 0: case 1: {  // ALU r, r (ADD OR ADC SBB AND SUB XOR CMP)
      unsigned op = rng.below(8);
      x.opc(bits, uint8_t(op * 8), uint8_t(op * 8 + 1)).rr(b, a);
      if (op == 2 || op == 3) s.reads = fl::CF;
      bool logic = op == 1 || op == 4 || op == 6;
      s.defines = logic ? fl::STATUS & ~fl::AF : fl::STATUS;
      s.undefines = logic ? fl::AF : 0;
      break;
    }
    case 2: {  // ALU r, imm8 (83, sign-extended) or 80
      unsigned op = rng.below(8);
      if (bits == 8) x.op({0x80}).rr(op, a).i8(rng.u32());
      else x.osize(bits).op({0x83}).rr(op, a).i8(rng.u32());
      if (op == 2 || op == 3) s.reads = fl::CF;
      bool logic = op == 1 || op == 4 || op == 6;
      s.defines = logic ? fl::STATUS & ~fl::AF : fl::STATUS;
      s.undefines = logic ? fl::AF : 0;
      break;
    }
    case 3: {  // INC/DEC (CF unaffected), NEG, NOT (no flags)
      unsigned ext = rng.below(4);
      if (ext < 2) x.opc(bits, 0xfe, 0xff).rr(ext, a), s.defines = fl::STATUS & ~fl::CF;
      else x.opc(bits, 0xf6, 0xf7).rr(ext, a), s.defines = ext == 3 ? fl::STATUS : 0;
      break;
    }
    case 4: case 5: {  // shifts and rotates by imm8, counts biased to 0, 1 and the width
      Grp2 ext = Grp2(std::array<unsigned, 7>{ROL, ROR, RCL, RCR, SHL, SHR, SAR}[rng.below(7)]);
      uint32_t count = std::array<uint32_t, 8>{0, 1, 2, bits - 1, bits, bits + 1, 32, rng.below(256)}[rng.below(8)];
      x.opc(bits, 0xc0, 0xc1).rr(ext, a).i8(count);
      uint32_t def = shift_defined_flags(ext, bits, count);
      if ((count & k_count_mask) == 0) break;  // nothing written
      if (ext == RCL || ext == RCR) s.reads = fl::CF;
      bool rot = ext == ROL || ext == ROR || ext == RCL || ext == RCR;
      uint32_t written = rot ? fl::CF | fl::OF : fl::STATUS;
      s.defines = written & def;
      s.undefines = written & ~def;
      break;
    }
    case 6: {  // BT r, imm8: CF defined, ZF unaffected, OF SF AF PF undefined
      unsigned bb = bits == 8 ? 32 : bits;
      x.osize(bb).op({TWO_BYTE, 0xba}).rr(4, bits == 8 ? any_reg(rng) : a).i8(rng.u32());
      s.defines = fl::CF;
      s.undefines = fl::OF | fl::SF | fl::AF | fl::PF;
      break;
    }
    case 7: {  // MUL/IMUL r, IMUL r, r: CF OF defined
      if (rng.coin()) x.opc(bits, 0xf6, 0xf7).rr(4 + rng.below(2), a);
      else x.osize(bits == 8 ? 32 : bits).op({TWO_BYTE, 0xaf}).rr(bits == 8 ? any_reg(rng) : a, b);
      s.defines = fl::CF | fl::OF;
      s.undefines = fl::SF | fl::ZF | fl::AF | fl::PF;
      break;
    }
    case 8: {  // CLC STC CMC
      uint8_t op = std::array<uint8_t, 3>{0xf8, 0xf9, 0xf5}[rng.below(3)];
      x.op({op});
      s.reads = op == 0xf5 ? fl::CF : 0;
      s.defines = fl::CF;
      break;
    }
    case 9: {  // SAHF / LAHF
      if (rng.coin()) x.op({0x9e}), s.defines = fl::SF | fl::ZF | fl::AF | fl::PF | fl::CF;
      else x.op({0x9f}), s.reads = fl::SF | fl::ZF | fl::AF | fl::PF | fl::CF;
      break;
    }
    case 10: {  // SETcc r8
      unsigned cc = rng.below(16);
      x.op({TWO_BYTE, uint8_t(0x90 + cc)}).rr(0, rng.below(8));
      s.reads = condition_reads(cc);
      break;
    }
    case 11: {  // CMOVcc r, r
      unsigned cc = rng.below(16);
      x.osize(bits == 8 ? 32 : bits).op({TWO_BYTE, uint8_t(0x40 + cc)}).rr(any_reg(rng), any_reg(rng));
      s.reads = condition_reads(cc);
      break;
    }
    case 12: {  // Jcc over "mov r, imm32"
      unsigned cc = rng.below(16);
      x.op({uint8_t(0x70 + cc), 5, uint8_t(0xb8 + any_reg(rng))}).d32(rng.u32());
      s.reads = condition_reads(cc);
      break;
    }
    case 13: {  // DAA/DAS: read CF AF; OF undefined
      x.op({rng.coin() ? uint8_t(0x27) : uint8_t(0x2f)});
      s.reads = fl::CF | fl::AF;
      s.defines = fl::STATUS & ~fl::OF;
      s.undefines = fl::OF;
      break;
    }
    case 14: {  // XADD / CMPXCHG r, r: ADD / CMP flags
      if (rng.coin()) x.osize(bits).op({TWO_BYTE, uint8_t(bits == 8 ? 0xc0 : 0xc1)}).rr(b, a);
      else x.osize(bits).op({TWO_BYTE, uint8_t(bits == 8 ? 0xb0 : 0xb1)}).rr(b, a);
      s.defines = fl::STATUS;
      break;
    }
    case 15: {  // SHLD/SHRD r, r, imm8 (32-bit: no undefined result)
      uint32_t count = std::array<uint32_t, 5>{0, 1, 2, 31, rng.below(256)}[rng.below(5)];
      x.op({TWO_BYTE, rng.coin() ? uint8_t(0xa4) : uint8_t(0xac)}).rr(any_reg(rng), any_reg(rng)).i8(count);
      uint32_t c = count & k_count_mask;
      if (c == 0) break;
      s.defines = fl::STATUS & ~fl::AF & ~(c == 1 ? 0 : fl::OF);
      s.undefines = fl::STATUS & ~s.defines;
      break;
    }
  }
  s.code = std::move(x.b);
  return s;
}

void gen_sequences(std::vector<Case>& out, Rng& rng) {
  for (int i = 0; i < 20000; ++i) {
    Case c = random_case(rng);
    if (i % 4 == 0)  // small values make zero/sign/carry outcomes likelier
      for (auto& g : c.gpr) g = rng.coin() ? rng.below(4) : uint32_t(0) - rng.below(4);
    uint32_t defined = fl::STATUS;
    unsigned n = 2 + rng.below(5);
    for (unsigned k = 0; k < n;) {
      Step s = random_step(rng);
      if (s.reads & ~defined) continue;  // would read an undefined flag: pick another
      c.code.insert(c.code.end(), s.code.begin(), s.code.end());
      defined = (defined | s.defines) & ~s.undefines;
      ++k;
    }
    c.defined_flags = defined;
    out.push_back(std::move(c));
  }
}
CPU_DIFF_FAMILY_U(Sequence, LazyFlags, 0, gen_sequences)

// Every condition code evaluated right after each flag producer: one case runs
// "op a, b" then SETcc [window + cc] for cc = 0..15, so a memory difference at
// offset N names condition N (SDM vol. 1, appendix B: 0 O, 1 NO, 2 B, 3 AE,
// 4 E, 5 NE, 6 BE, 7 A, 8 S, 9 NS, A P, B NP, C L, D GE, E LE, F G).
void gen_conditions(std::vector<Case>& out, Rng& rng) {
  enum Producer : unsigned { ADD, OR, ADC, SBB, AND, SUB, XOR, CMP, TEST, INC, DEC, NEG, CMPXCHG, k_producers };
  for (unsigned bits : {8u, 16u, 32u})
    for (unsigned p = 0; p < k_producers; ++p) {
      std::vector<std::pair<uint32_t, uint32_t>> pairs = operand_pairs(rng, bits, 300);
      const bool full = bits == 8 && (p == CMP || p == SUB);  // every 8-bit pair for the compares
      for (size_t i = 0; i < pairs.size(); ++i) {
        if (bits == 8 && !full && rng.below(32) != 0) continue;
        auto [a, b] = pairs[i];
        Case c = random_case(rng);
        unsigned d, s;
        pick_two(bits, uint32_t(i), d, s);
        if (p == CMPXCHG && (d & 3) == EAX) d = bits == 8 ? unsigned(BL) : unsigned(EBX);
        if (p == CMPXCHG && (s & 3) == EAX) s = bits == 8 ? unsigned(CH) : unsigned(ECX);
        if (d == s) s = bits == 8 ? unsigned(DH) : unsigned(EDI);
        Asm x;
        if (p < TEST) x.opc(bits, uint8_t(p * 8), uint8_t(p * 8 + 1)).rr(s, d);
        if (p == TEST) x.opc(bits, 0x84, 0x85).rr(s, d);
        if (p == INC || p == DEC) x.opc(bits, 0xfe, 0xff).rr(p == INC ? 0 : 1, d);
        if (p == NEG) x.opc(bits, 0xf6, 0xf7).rr(3, d);
        if (p == CMPXCHG) x.osize(bits).op({TWO_BYTE, uint8_t(bits == 8 ? 0xb0 : 0xb1)}).rr(s, d);
        for (unsigned cc = 0; cc < 16; ++cc) x.op({TWO_BYTE, uint8_t(0x90 + cc)}).mem(0, cc);  // setcc [win+cc]
        x.into(c);
        set_reg(c, bits, d, a);
        set_reg(c, bits, s, b);
        if (p == CMPXCHG) set_reg(c, bits, EAX, rng.coin() ? a : b);
        c.mem.assign(16, 0xcc);
        if (p == AND || p == OR || p == XOR || p == TEST) c.defined_flags = fl::STATUS & ~fl::AF;
        out.push_back(std::move(c));
      }
    }
}
CPU_DIFF_FAMILY_U(Sequence, ConditionsAfterEachProducer, 16, gen_conditions)

}  // namespace
}  // namespace anykvm::difftest

namespace anykvm::difftest {
namespace {

// Memory read-modify-write steps between the register steps: ALU/INC/DEC/NEG/
// shift/XADD/CMPXCHG/BTS on the window, SETcc/CMOVcc with memory operands and
// PUSHFD/POPFD round trips, so flags flow through memory forms too.
Step memory_step(Rng& rng) {
  Step s;
  Asm x;
  const unsigned bits = std::array<unsigned, 3>{8, 16, 32}[rng.below(3)];
  const unsigned r = bits == 8 ? rng.below(8) : any_reg(rng);
  const uint32_t off = 4 * rng.below(4);
  switch (rng.below(9)) {
    case 0: case 1: {  // ALU [m], r
      unsigned op = rng.below(8);
      x.opc(bits, uint8_t(op * 8), uint8_t(op * 8 + 1)).mem(r, off);
      if (op == 2 || op == 3) s.reads = fl::CF;
      bool logic = op == 1 || op == 4 || op == 6;
      s.defines = logic ? fl::STATUS & ~fl::AF : fl::STATUS;
      s.undefines = logic ? fl::AF : 0;
      break;
    }
    case 2: {  // INC/DEC/NEG [m]
      unsigned ext = std::array<unsigned, 3>{0, 1, 3}[rng.below(3)];
      if (ext < 2) x.opc(bits, 0xfe, 0xff).mem(ext, off), s.defines = fl::STATUS & ~fl::CF;
      else x.opc(bits, 0xf6, 0xf7).mem(ext, off), s.defines = fl::STATUS;
      break;
    }
    case 3: {  // SHL/SHR/SAR/ROL [m], 1 (count 1: every written flag defined but AF for shifts)
      unsigned ext = std::array<unsigned, 4>{0, 4, 5, 7}[rng.below(4)];
      x.opc(bits, 0xd0, 0xd1).mem(ext, off);
      s.defines = ext == 0 ? fl::CF | fl::OF : fl::STATUS & ~fl::AF;
      s.undefines = ext == 0 ? 0 : fl::AF;
      break;
    }
    case 4: {  // XADD / CMPXCHG [m], r
      x.osize(bits).op({TWO_BYTE, uint8_t(rng.coin() ? (bits == 8 ? 0xc0 : 0xc1) : (bits == 8 ? 0xb0 : 0xb1))}).mem(r, off);
      s.defines = fl::STATUS;
      break;
    }
    case 5: {  // BTS [m], imm8
      x.osize(bits == 8 ? 32 : bits).op({TWO_BYTE, 0xba}).mem(5, off).i8(rng.u32());
      s.defines = fl::CF;
      s.undefines = fl::OF | fl::SF | fl::AF | fl::PF;
      break;
    }
    case 6: {  // SETcc [m]
      unsigned cc = rng.below(16);
      x.op({TWO_BYTE, uint8_t(0x90 + cc)}).mem(0, off + rng.below(4));
      s.reads = condition_reads(cc);
      break;
    }
    case 7: {  // CMOVcc r, [m]
      unsigned cc = rng.below(16);
      x.osize(bits == 8 ? 32 : bits).op({TWO_BYTE, uint8_t(0x40 + cc)}).mem(any_reg(rng), off);
      s.reads = condition_reads(cc);
      break;
    }
    case 8: {  // PUSHFD; POPFD (flags through the stack, unchanged)
      x.op({0x9c, 0x9d});
      break;
    }
  }
  s.code = std::move(x.b);
  s.relocs = std::move(x.relocs);
  return s;
}

void gen_mixed(std::vector<Case>& out, Rng& rng) {
  for (int i = 0; i < 8000; ++i) {
    Case c = random_case(rng);
    if (i % 4 == 0)
      for (auto& g : c.gpr) g = rng.coin() ? rng.below(4) : uint32_t(0) - rng.below(4);
    c.mem.resize(20);
    for (auto& b : c.mem) b = uint8_t(i % 4 == 0 ? rng.below(3) : rng.u32());
    uint32_t defined = fl::STATUS;
    unsigned n = 2 + rng.below(6);
    for (unsigned k = 0; k < n;) {
      Step s = rng.coin() ? memory_step(rng) : random_step(rng);
      if (s.reads & ~defined) continue;
      for (uint8_t r : s.relocs) c.relocs.push_back(uint8_t(c.code.size() + r));
      c.code.insert(c.code.end(), s.code.begin(), s.code.end());
      defined = (defined | s.defines) & ~s.undefines;
      ++k;
    }
    c.defined_flags = defined;
    out.push_back(std::move(c));
  }
}
CPU_DIFF_FAMILY_U(Sequence, MixedWithMemory, 20, gen_mixed)

}  // namespace
}  // namespace anykvm::difftest
