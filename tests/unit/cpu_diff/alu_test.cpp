// Differential tests of the ALU group (SDM vol. 2: ADD, ADC, SUB, SBB, CMP,
// AND, OR, XOR, TEST) in every encoding form (r/m,r; r,r/m; acc,imm; 80/81/82/83
// group; memory destination with and without LOCK; memory source), and of
// INC, DEC, NEG, NOT. 8-bit register forms of ADD/ADC/SUB/SBB/CMP run every
// operand pair (ADC/SBB with both carries in); other widths and forms run
// edge x edge pairs plus random ones. AND/OR/XOR/TEST leave AF undefined.
#include "asm.h"

namespace anykvm::difftest {
namespace {

enum class AluOp : uint8_t { Add = 0, Or = 1, Adc = 2, Sbb = 3, And = 4, Sub = 5, Xor = 6, Cmp = 7 };
constexpr uint32_t k_logic_flags = fl::STATUS & ~fl::AF;  // SDM: AF undefined for AND/OR/XOR/TEST

// Encoding forms of the classic ALU rows (opcode op*8 + 0..5, groups 80-83).
enum class Form : uint8_t { EG, GE, AccImm, Grp, Grp82, Grp83, MemG, LockMemG, GMem, MemImm };
constexpr uint8_t GRP_IB = 0x80, GRP_IZ = 0x81, GRP_IB_ALIAS = 0x82, GRP_IB_SX = 0x83;

uint32_t sext8(uint32_t v) { return uint32_t(int32_t(int8_t(v))); }

void put_mem(Case& c, unsigned bits, uint32_t off, uint32_t v) {
  if (c.mem.size() < off + 4) c.mem.resize(off + 4, 0xee);
  for (unsigned i = 0; i < bits / 8; ++i) c.mem[off + i] = uint8_t(v >> (8 * i));
}

// One case of `op dst, src` with dst = a, src = b in the given form.
Case alu_case(Rng& rng, AluOp op, Form f, unsigned bits, uint32_t a, uint32_t b, uint32_t sel) {
  Case c = random_case(rng);
  uint8_t base = uint8_t(unsigned(op) * 8);
  unsigned d, s;
  pick_two(bits, sel, d, s);
  Asm x;
  switch (f) {
    case Form::EG: x.opc(bits, base, base + 1).rr(s, d); break;
    case Form::GE: x.opc(bits, base + 2, base + 3).rr(d, s); break;
    case Form::AccImm: d = EAX, x.opc(bits, base + 4, base + 5).imm(bits, b); break;
    case Form::Grp: x.opc(bits, GRP_IB, GRP_IZ).rr(unsigned(op), d).imm(bits, b); break;
    case Form::Grp82: x.op({GRP_IB_ALIAS}).rr(unsigned(op), d).i8(b); break;  // 32-bit mode alias of 80
    case Form::Grp83: b = sext8(b) & width_mask(bits), x.osize(bits).op({GRP_IB_SX}).rr(unsigned(op), d).i8(b); break;
    case Form::LockMemG: x.op({LOCK}); [[fallthrough]];
    case Form::MemG: x.opc(bits, base, base + 1).mem(s, 0); break;
    case Form::GMem: x.opc(bits, base + 2, base + 3).mem(d, 0); break;
    case Form::MemImm: x.opc(bits, GRP_IB, GRP_IZ).mem(unsigned(op), 0).imm(bits, b); break;
  }
  x.into(c);
  bool dst_mem = f == Form::MemG || f == Form::LockMemG || f == Form::MemImm;
  if (dst_mem) put_mem(c, bits, 0, a);
  else set_reg(c, bits, d, a);
  if (f == Form::EG || f == Form::MemG || f == Form::LockMemG) set_reg(c, bits, s, b);
  if (f == Form::GE) set_reg(c, bits, s, b);
  if (f == Form::GMem) put_mem(c, bits, 0, b);
  if (op == AluOp::And || op == AluOp::Or || op == AluOp::Xor) c.defined_flags = k_logic_flags;
  return c;
}

void gen_alu(std::vector<Case>& out, Rng& rng, AluOp op, bool exhaustive8) {
  const bool carry_in = op == AluOp::Adc || op == AluOp::Sbb;
  const bool lockable = op != AluOp::Cmp;
  uint32_t sel = 0;
  if (exhaustive8) {  // every 8-bit pair, register form, rotating through AL..BH
    for (uint32_t a = 0; a < 256; ++a)
      for (uint32_t b = 0; b < 256; ++b)
        for (unsigned cf = 0; cf <= unsigned(carry_in); ++cf) {
          Case c = alu_case(rng, op, Form::EG, 8, a, b, sel++);
          if (carry_in) c.eflags = (c.eflags & ~fl::CF) | (cf ? fl::CF : 0);
          out.push_back(std::move(c));
        }
  }
  for (unsigned bits : {8u, 16u, 32u}) {
    for (Form f : {Form::EG, Form::GE, Form::AccImm, Form::Grp, Form::Grp82, Form::Grp83, Form::MemG,
                   Form::LockMemG, Form::GMem, Form::MemImm}) {
      if (f == Form::Grp82 && bits != 8) continue;
      if (f == Form::Grp83 && bits == 8) continue;
      if (f == Form::LockMemG && !lockable) continue;
      // Register forms get the edge grid and many random pairs; memory forms fewer.
      bool reg = f == Form::EG || f == Form::GE || f == Form::AccImm || f == Form::Grp;
      size_t random = reg ? 600 : 150;
      std::vector<std::pair<uint32_t, uint32_t>> pairs;
      if (bits == 8) {
        for (size_t i = 0; i < random + 100; ++i) pairs.emplace_back(rng.u32() & 0xff, rng.u32() & 0xff);
      } else {
        pairs = operand_pairs(rng, bits, random);
      }
      for (auto [a, b] : pairs) out.push_back(alu_case(rng, op, f, bits, a, b, sel++));
    }
  }
}

CPU_DIFF_FAMILY(Alu, Add, 16, [](auto& v, Rng& r) { gen_alu(v, r, AluOp::Add, true); })
CPU_DIFF_FAMILY(Alu, Adc, 16, [](auto& v, Rng& r) { gen_alu(v, r, AluOp::Adc, true); })
CPU_DIFF_FAMILY(Alu, Sub, 16, [](auto& v, Rng& r) { gen_alu(v, r, AluOp::Sub, true); })
CPU_DIFF_FAMILY(Alu, Sbb, 16, [](auto& v, Rng& r) { gen_alu(v, r, AluOp::Sbb, true); })
CPU_DIFF_FAMILY(Alu, Cmp, 16, [](auto& v, Rng& r) { gen_alu(v, r, AluOp::Cmp, true); })
CPU_DIFF_FAMILY_U(Alu, And, 16, [](auto& v, Rng& r) { gen_alu(v, r, AluOp::And, false); })
CPU_DIFF_FAMILY_U(Alu, Or, 16, [](auto& v, Rng& r) { gen_alu(v, r, AluOp::Or, false); })
CPU_DIFF_FAMILY_U(Alu, Xor, 16, [](auto& v, Rng& r) { gen_alu(v, r, AluOp::Xor, false); })

// TEST: 84/85 r/m,r; A8/A9 acc,imm; F6/F7 /0 r/m,imm (register and memory).
void gen_test(std::vector<Case>& out, Rng& rng) {
  constexpr uint8_t TEST_EG8 = 0x84, TEST_EGV = 0x85, TEST_ACC8 = 0xa8, TEST_ACCV = 0xa9, GRP3_8 = 0xf6,
                    GRP3_V = 0xf7;
  uint32_t sel = 0;
  for (unsigned bits : {8u, 16u, 32u}) {
    for (unsigned form = 0; form < 5; ++form) {
      for (auto [a, b] : operand_pairs(rng, bits, 300)) {
        if (bits == 8 && rng.below(64) != 0) continue;  // a sample of the 8-bit grid suffices for TEST
        Case c = random_case(rng);
        unsigned d, s;
        pick_two(bits, sel++, d, s);
        Asm x;
        switch (form) {
          case 0: x.opc(bits, TEST_EG8, TEST_EGV).rr(s, d), set_reg(c, bits, d, a), set_reg(c, bits, s, b); break;
          case 1: x.opc(bits, TEST_ACC8, TEST_ACCV).imm(bits, b), set_reg(c, bits, EAX, a); break;
          case 2: x.opc(bits, GRP3_8, GRP3_V).rr(0, d).imm(bits, b), set_reg(c, bits, d, a); break;
          case 3: x.opc(bits, TEST_EG8, TEST_EGV).mem(s, 0), put_mem(c, bits, 0, a), set_reg(c, bits, s, b); break;
          case 4: x.opc(bits, GRP3_8, GRP3_V).mem(0, 0).imm(bits, b), put_mem(c, bits, 0, a); break;
        }
        x.into(c);
        c.defined_flags = k_logic_flags;
        out.push_back(std::move(c));
      }
    }
  }
}
CPU_DIFF_FAMILY_U(Alu, Test, 16, gen_test)

// INC/DEC (FE/FF /0 /1, 40+r/48+r), NEG/NOT (F6/F7 /3 /2): every 8-bit value,
// edges and random values for 16/32, register and memory forms.
void gen_unary(std::vector<Case>& out, Rng& rng) {
  constexpr uint8_t GRP4 = 0xfe, GRP5 = 0xff, GRP3_8 = 0xf6, GRP3_V = 0xf7, INC_R = 0x40, DEC_R = 0x48;
  enum Ext : unsigned { INC = 0, DEC = 1, NOT = 2, NEG = 3 };
  uint32_t sel = 0;
  for (unsigned bits : {8u, 16u, 32u}) {
    std::vector<uint32_t> vals;
    if (bits == 8) {
      for (uint32_t v = 0; v < 256; ++v) vals.push_back(v);
    } else {
      vals = edges(bits);
      for (int i = 0; i < 300; ++i) vals.push_back(rng.u32() & width_mask(bits));
    }
    for (unsigned ext : {INC, DEC, NOT, NEG}) {
      for (uint32_t v : vals) {
        for (unsigned form = 0; form < 3; ++form) {  // 0 ModRM reg, 1 ModRM mem, 2 short 40+r/48+r
          if (form == 2 && (bits == 8 || ext > DEC)) continue;
          if (form == 1 && rng.below(4) != 0) continue;  // memory forms: a sample
          Case c = random_case(rng);
          unsigned d, unused;
          pick_two(bits, sel++, d, unused);
          Asm x;
          bool inc_dec = ext <= DEC;
          uint8_t o8 = inc_dec ? GRP4 : GRP3_8, ov = inc_dec ? GRP5 : GRP3_V;
          if (form == 0) x.opc(bits, o8, ov).rr(ext, d), set_reg(c, bits, d, v);
          if (form == 1) x.opc(bits, o8, ov).mem(ext, 0), put_mem(c, bits, 0, v);
          if (form == 2) x.osize(bits).op({uint8_t((ext == INC ? INC_R : DEC_R) + d)}), set_reg(c, bits, d, v);
          x.into(c);
          out.push_back(std::move(c));
        }
      }
    }
  }
}
CPU_DIFF_FAMILY(Alu, IncDecNegNot, 16, gen_unary)

}  // namespace
}  // namespace anykvm::difftest
