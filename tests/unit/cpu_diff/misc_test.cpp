// Differential tests of exceptions raised by unprivileged instructions and of
// small leftovers: BOUND (#BR, vector 5; invalid in 64-bit mode), INTO (#OF,
// a trap: EIP after the instruction), INT3, UD2, LOCK where the SDM makes it
// #UD (register destination, CMP, BT, MOV), instructions longer than 15 bytes
// (#GP(0)), XLAT, the flag instructions CLC/STC/CMC/CLD/STD, MOV moffs, the
// multi-byte NOP, and random legacy-prefix soup on ALU/shift/multiply forms
// (segment overrides, repeated 66; 67 on register forms only).
#include "asm.h"

namespace anykvm::difftest {
namespace {

constexpr uint8_t BOUND = 0x62, INTO = 0xce, INT3 = 0xcc, XLAT = 0xd7, NOP = 0x90;
constexpr uint8_t CLC = 0xf8, STC = 0xf9, CMC = 0xf5, CLD = 0xfc, STD = 0xfd;
constexpr uint8_t MOV_AL_MOFFS = 0xa0, MOV_EAX_MOFFS = 0xa1, MOV_MOFFS_AL = 0xa2, MOV_MOFFS_EAX = 0xa3;
constexpr uint8_t UD2_2 = 0x0b, NOP_EV = 0x1f, MOV_EV_GV = 0x89, ADD_EV_GV = 0x01, CMP_EV_GV = 0x39;
constexpr uint8_t BT_EV_GV = 0xa3;
constexpr unsigned k_max_insn_len = 15;

void put32(Case& c, uint32_t off, uint32_t v) {
  if (c.mem.size() < off + 4) c.mem.resize(off + 4, 0);
  for (unsigned i = 0; i < 4; ++i) c.mem[off + i] = uint8_t(v >> (8 * i));
}

void gen_exceptions(std::vector<Case>& out, Rng& rng) {
  // BOUND r, m: bounds [lower, upper] signed; #BR outside.
  for (unsigned bits : {16u, 32u})
    for (int i = 0; i < 200; ++i) {
      Case c = random_case(rng);
      uint32_t lo = rng.u32(), hi = rng.u32(), idx = rng.u32();
      if (i % 3 == 0) idx = lo;
      if (i % 3 == 1) idx = hi;
      if (bits == 16) put32(c, 0, (lo & 0xffff) | hi << 16);
      else put32(c, 0, lo), put32(c, 4, hi);
      set_reg(c, bits, EDX, idx);
      Asm x;
      x.osize(bits).op({BOUND}).mem(EDX, 0);
      x.into(c);
      out.push_back(std::move(c));
    }
  for (int i = 0; i < 16; ++i) {
    Case c = random_case(rng);
    c.eflags = (c.eflags & ~fl::OF) | (i & 1 ? fl::OF : 0);
    c.code = {i & 2 ? INT3 : INTO};
    out.push_back(std::move(c));
  }
  for (int i = 0; i < 4; ++i) {
    Case c = random_case(rng);
    c.code = {TWO_BYTE, UD2_2};
    out.push_back(std::move(c));
  }
  // LOCK on forms that do not allow it: #UD (SDM "LOCK").
  const std::vector<std::vector<uint8_t>> bad_lock = {
      {LOCK, ADD_EV_GV, 0xd8},              // lock add eax, ebx (register destination)
      {LOCK, MOV_EV_GV, 0x05, 0, 0, 0, 0},  // lock mov [disp32], eax
      {LOCK, CMP_EV_GV, 0x05, 0, 0, 0, 0},  // lock cmp [disp32], eax
      {LOCK, TWO_BYTE, BT_EV_GV, 0x05, 0, 0, 0, 0},  // lock bt [disp32], eax
      {LOCK, NOP},                          // lock nop
      {LOCK, 0x38, 0x05, 0, 0, 0, 0},       // lock cmp byte [disp32], al
      {LOCK, 0x81, 0x3d, 0, 0, 0, 0, 1, 0, 0, 0},  // lock cmp dword [disp32], 1
      {LOCK, 0x83, 0x3d, 0, 0, 0, 0, 1},    // lock cmp dword [disp32], byte 1
      {LOCK, 0x80, 0x3d, 0, 0, 0, 0, 1},    // lock cmp byte [disp32], 1
      {LOCK, 0x85, 0x05, 0, 0, 0, 0},       // lock test [disp32], eax
      {LOCK, 0x8b, 0x05, 0, 0, 0, 0},       // lock mov eax, [disp32]
      {LOCK, 0x03, 0x05, 0, 0, 0, 0},       // lock add eax, [disp32] (register destination)
      {LOCK, TWO_BYTE, 0xba, 0x25, 0, 0, 0, 0, 3},  // lock bt dword [disp32], 3
      {LOCK, 0xf7, 0x05, 0, 0, 0, 0, 1, 0, 0, 0},   // lock test dword [disp32], 1
  };
  for (const auto& code : bad_lock) {
    Case c = random_case(rng);
    c.code = code;
    // The disp32 follows the ModRM byte (after LOCK, the opcode and any 0F).
    if (code.size() > 4) c.relocs = {uint8_t(code[1] == TWO_BYTE ? 4 : 3)};
    out.push_back(std::move(c));
  }
  // Instruction length: 14, 15 (fine) and 16, 17 bytes (#GP(0), SDM vol. 2, 2.3.11).
  for (unsigned len = 14; len <= 17; ++len)
    for (uint8_t pfx : {OSIZE, uint8_t(0x3e)}) {
      Case c = random_case(rng);
      c.code.assign(len - 2, pfx);
      c.code.push_back(ADD_EV_GV);
      c.code.push_back(0xd8);  // add eax, ebx
      out.push_back(std::move(c));
    }
}
CPU_DIFF_FAMILY(Misc, Exceptions, 16, gen_exceptions)

void gen_misc(std::vector<Case>& out, Rng& rng) {
  for (int i = 0; i < 64; ++i) {  // XLAT: AL = [EBX + AL]
    Case c = random_case(rng);
    c.gpr[EBX] = rng.below(16);
    c.gpr_rel = 1u << EBX;
    c.mem.resize(272);
    for (auto& b : c.mem) b = uint8_t(rng.u32());
    c.code = {XLAT};
    out.push_back(std::move(c));
  }
  for (uint8_t op : {CLC, STC, CMC, CLD, STD})
    for (int i = 0; i < 16; ++i) {
      Case c = random_case(rng, true);
      c.code = {op};
      out.push_back(std::move(c));
    }
  for (uint8_t op : {MOV_AL_MOFFS, MOV_EAX_MOFFS, MOV_MOFFS_AL, MOV_MOFFS_EAX})
    for (unsigned bits : {8u, 16u, 32u}) {
      if ((bits == 8) != (op == MOV_AL_MOFFS || op == MOV_MOFFS_AL)) continue;
      Case c = random_case(rng);
      Asm x;
      x.osize(bits).op({op});
      x.relocs.push_back(uint8_t(x.b.size()));
      x.d32(8 + rng.below(8));
      x.into(c);
      c.mem.resize(272);
      for (auto& b : c.mem) b = uint8_t(rng.u32());
      out.push_back(std::move(c));
    }
  for (int i = 0; i < 16; ++i) {  // nop r/m (0F 1F /0), register and memory forms
    Case c = random_case(rng);
    Asm x;
    x.osize(i & 1 ? 16 : 32).op({TWO_BYTE, NOP_EV});
    if (i & 2) x.mem(0, 0);
    else x.rr(0, i % 8);
    x.into(c);
    out.push_back(std::move(c));
  }
}
CPU_DIFF_FAMILY(Misc, XlatFlagsMoffsNop, 272, gen_misc)

// Random legacy prefixes in front of register and memory forms.
void gen_prefix_soup(std::vector<Case>& out, Rng& rng) {
  static const uint8_t segs[] = {0x26, 0x2e, 0x36, 0x3e};
  struct Form {
    std::vector<uint8_t> op;  // opcode bytes before ModRM
    bool imm8;
    uint32_t defined;
  };
  const Form forms[] = {
      {{0x01}, false, fl::STATUS},                        // add Ev, Gv
      {{0x29}, false, fl::STATUS},                        // sub Ev, Gv
      {{0x21}, false, fl::STATUS & ~fl::AF},              // and Ev, Gv
      {{0xc1}, true, fl::CF | fl::ZF | fl::SF | fl::PF},  // grp2 Ev, imm8 (count 2..7 below)
      {{TWO_BYTE, 0xaf}, false, fl::CF | fl::OF},         // imul Gv, Ev
      {{0x87}, false, fl::STATUS},                        // xchg Ev, Gv
      {{0x8b}, false, fl::STATUS},                        // mov Gv, Ev
  };
  for (int i = 0; i < 3000; ++i) {
    Case c = random_case(rng);
    const Form& f = forms[rng.below(std::size(forms))];
    bool mem = rng.coin();
    Asm x;
    unsigned n = rng.below(6);
    for (unsigned k = 0; k < n; ++k) {
      unsigned kind = rng.below(mem ? 2 : 3);
      if (kind == 0) x.op({segs[rng.below(4)]});
      if (kind == 1) x.op({OSIZE});
      if (kind == 2) x.op({ASIZE});  // no effect on register forms
    }
    x.b.insert(x.b.end(), f.op.begin(), f.op.end());
    unsigned reg = rng.below(8), rm = rng.below(8);
    if (reg == ESP) reg = EBX;
    if (rm == ESP) rm = ESI;
    if (mem) x.mem(f.imm8 ? rng.below(8) : reg, 0);
    else x.rr(f.imm8 ? rng.below(8) : reg, rm);
    if (f.imm8) x.i8(2 + rng.below(6));
    if (x.b.size() > k_max_insn_len) continue;
    x.into(c);
    c.mem.resize(16);
    for (auto& b : c.mem) b = uint8_t(rng.u32());
    c.defined_flags = f.defined;
    out.push_back(std::move(c));
  }
}
CPU_DIFF_FAMILY_U(Misc, PrefixSoup, 16, gen_prefix_soup)

}  // namespace
}  // namespace anykvm::difftest
