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

// Random legacy prefixes in front of register and memory forms: segment
// overrides, repeated 66, 67 on register forms, F2/F3 on one-byte opcodes
// (ignored there; in front of 0F they select other instructions), and LOCK
// (#UD on register forms and on MOV/IMUL/shifts, SDM "LOCK").
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
    if (f.op[0] != TWO_BYTE && rng.below(4) == 0) x.b.insert(x.b.begin() + rng.below(uint32_t(x.b.size() + 1)), rng.coin() ? REP : REPNE);
    if (rng.below(6) == 0) x.b.insert(x.b.begin() + rng.below(uint32_t(x.b.size() + 1)), LOCK);
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

namespace anykvm::difftest {
namespace {

// LOCK on the remaining read-modify-write forms (valid), LOCK and ModRM forms
// the SDM makes #UD, the undocumented-but-architectural aliases (F6/F7 /1 =
// TEST, SALC), UD0/UD1, and ARPL (63: ARPL in 32-bit and compatibility mode).
void gen_lock_and_aliases(std::vector<Case>& out, Rng& rng) {
  struct Form {
    std::vector<uint8_t> op;  // bytes before the ModRM
    int reg;                  // ModRM reg field
    bool mem;
    int imm_bytes;
    uint32_t defined;
  };
  constexpr uint32_t S = fl::STATUS;
  const std::vector<Form> forms = {
      // valid LOCKed memory forms
      {{LOCK, 0xfe}, 0, true, 0, S}, {{LOCK, 0xff}, 1, true, 0, S},       // lock inc/dec
      {{LOCK, 0xf6}, 2, true, 0, S}, {{LOCK, 0xf7}, 3, true, 0, S},       // lock not/neg
      {{LOCK, 0x66, 0xf7}, 3, true, 0, S}, {{LOCK, 0x86}, 1, true, 0, S},  // lock neg word, lock xchg
      {{LOCK, 0x83}, 2, true, 1, S}, {{LOCK, 0x80}, 3, true, 1, S},       // lock adc/sbb imm
      {{LOCK, TWO_BYTE, 0xc1}, 2, true, 0, S},                            // lock xadd
      // #UD: LOCK with a register destination or an instruction LOCK does not allow
      {{LOCK, 0x87}, 0, false, 0, S}, {{LOCK, TWO_BYTE, 0xb1}, 1, false, 0, S},
      {{LOCK, TWO_BYTE, 0xc1}, 1, false, 0, S}, {{LOCK, 0xfe}, 0, false, 0, S},
      {{LOCK, 0xd1}, 4, true, 0, S}, {{LOCK, 0xf7}, 4, true, 0, S},       // lock shl / mul [m]
      {{LOCK, TWO_BYTE, 0x94}, 0, true, 0, S}, {{LOCK, 0xc7}, 0, true, 4, S},  // lock sete / mov [m], imm
      {{LOCK, 0xa4}, -1, false, 0, S}, {{LOCK, 0x40}, -1, false, 0, S},   // lock movsb, lock inc eax
      {{LOCK, TWO_BYTE, 0xc7}, 1, false, 0, S},                           // lock cmpxchg8b reg
      // #UD: ModRM forms with no instruction
      {{TWO_BYTE, 0xc7}, 1, false, 0, S},  // cmpxchg8b with a register operand
      {{0x62}, 0, false, 0, S},            // bound with a register operand
      {{0xfe}, 2, false, 0, S}, {{0xfe}, 7, true, 0, S}, {{0xff}, 7, false, 0, S},
      {{0xc6}, 1, true, 1, S}, {{0xc7}, 3, false, 4, S},
      {{TWO_BYTE, 0xb9}, 0, false, 0, S},  // UD1
      {{TWO_BYTE, 0xff}, 0, false, 0, S},  // UD0
      // aliases
      {{0xf6}, 1, false, 1, S & ~fl::AF}, {{0xf7}, 1, true, 4, S & ~fl::AF},
      {{0x66, 0xf7}, 1, false, 2, S & ~fl::AF},
      {{0xd6}, -1, false, 0, S},  // SALC
      {{0x63}, -1, false, 0, S},  // ARPL r/m16, r16 (ModRM below)
      {{0x63}, -2, true, 0, S},   // ARPL m16, r16
  };
  for (const Form& f : forms)
    for (int i = 0; i < 24; ++i) {
      Case c = random_case(rng);
      c.mem.resize(16);
      for (auto& b : c.mem) b = uint8_t(rng.u32());
      Asm x;
      x.b = f.op;
      unsigned reg = f.reg >= 0 ? unsigned(f.reg) : rng.below(8);
      if (f.reg == -1 && f.op.back() != 0x63) {  // no ModRM
      } else if (f.mem) {
        x.mem(reg == ESP && f.reg < 0 ? unsigned(EBX) : reg, 4 * rng.below(2));
      } else {
        unsigned rm = rng.below(8);
        if (rm == ESP && f.reg >= 0) rm = EBP;
        x.rr(reg == ESP && f.reg < 0 ? unsigned(EBX) : reg, rm);
      }
      for (int k = 0; k < f.imm_bytes; ++k) x.i8(rng.u32());
      x.into(c);
      if (f.op.back() == 0x63 && rng.coin()) {  // ARPL: make RPL(dest) < RPL(src) half the time
        c.gpr[EBX] = (c.gpr[EBX] & ~3u) | 3;
        for (auto& g : c.gpr) g = (g & ~3u) | rng.below(4);
      }
      c.defined_flags = f.defined;
      out.push_back(std::move(c));
    }
}
CPU_DIFF_FAMILY(Misc, LockUdAliases, 16, gen_lock_and_aliases)

}  // namespace
}  // namespace anykvm::difftest

namespace anykvm::difftest {
namespace {

// Self-modifying code inside a case (SDM vol. 3, 11.6: a store to an
// instruction ahead takes effect when it is executed): "call next; pop ebx"
// gives the code address, then a byte store patches the immediate or the
// opcode of the very next instruction, a dword store rewrites a run of
// INC/DEC r32 that follows, or a REP STOSB overwrites it with NOPs.
void gen_self_modifying(std::vector<Case>& out, Rng& rng) {
  constexpr uint8_t CALL_REL32 = 0xe8, POP_EBX = 0x5b, MOV_EB_IB = 0xc6, MOV_EV_IZ = 0xc7, MODRM_EBX_D8 = 0x43;
  constexpr uint8_t MOV_R_IZ = 0xb8, MOV_AL_IB = 0xb0, LEA = 0x8d, MODRM_EDI_EBX_D8 = 0x7b, MOV_ECX_IZ = 0xb9;
  constexpr uint8_t STOSB = 0xaa;
  constexpr uint32_t BASE_AT = 5;  // pop ebx yields the address of code offset 5
  static const unsigned regs[] = {EAX, ECX, EDX, ESI, EDI, EBP};  // not ESP, not EBX
  auto incdec = [&] { return uint8_t((rng.coin() ? 0x40 : 0x48) + regs[rng.below(6)]); };
  for (int i = 0; i < 800; ++i) {
    Case c = random_case(rng);
    Asm x;
    x.op({CALL_REL32}).d32(0).op({POP_EBX});
    switch (i % 4) {
      case 0: {  // patch one immediate byte of the next "mov r, imm32"
        const unsigned j = rng.below(4);
        x.op({MOV_EB_IB, MODRM_EBX_D8, uint8_t(11 + j - BASE_AT), uint8_t(rng.u32())});
        x.op({uint8_t(MOV_R_IZ + regs[rng.below(6)])}).d32(rng.u32());
        break;
      }
      case 1: {  // patch the opcode of the next "mov r, imm32" (another register)
        x.op({MOV_EB_IB, MODRM_EBX_D8, uint8_t(10 - BASE_AT), uint8_t(MOV_R_IZ + regs[rng.below(6)])});
        x.op({uint8_t(MOV_R_IZ + regs[rng.below(6)])}).d32(rng.u32());
        break;
      }
      case 2: {  // a dword store over a run of INC/DEC r32 (maybe straddling two of them)
        const unsigned j = rng.below(5);
        uint32_t v = 0;
        for (int k = 0; k < 4; ++k) v |= uint32_t(rng.coin() ? 0x90 : incdec()) << (8 * k);
        x.op({MOV_EV_IZ, MODRM_EBX_D8, uint8_t(13 + j - BASE_AT)}).d32(v);
        for (int k = 0; k < 8; ++k) x.op({incdec()});
        break;
      }
      case 3: {  // rep stosb of NOPs over the INC/DEC run that follows it
        const unsigned s = rng.below(9), n = 1 + rng.below(16 - s);
        x.op({MOV_AL_IB, 0x90, LEA, MODRM_EDI_EBX_D8, uint8_t(18 + s - BASE_AT), MOV_ECX_IZ}).d32(n);
        x.op({REP, STOSB});
        for (int k = 0; k < 16; ++k) x.op({incdec()});
        break;
      }
    }
    x.into(c);
    out.push_back(std::move(c));
  }
}
CPU_DIFF_FAMILY(Misc, SelfModifyingCode, 0, gen_self_modifying)

}  // namespace
}  // namespace anykvm::difftest

namespace anykvm::difftest {
namespace {

// Single-step (#DB, vector 1, a trap; SDM vol. 3, 17.3.1.4): POPFD sets TF, the
// instruction after it runs, then #DB reports the next EIP. A REP string
// instruction traps after every iteration with EIP still on it, so the state
// at the trap shows one element done (ECX, ESI, EDI, memory); a taken jump
// reports its target; after POP SS the trap waits one more instruction. The
// registers, flags and memory at the trap are compared.
void gen_single_step(std::vector<Case>& out, Rng& rng) {
  constexpr uint8_t PUSH_IZ = 0x68, POPFD = 0x9d, INC_EAX = 0x40, MOVSB = 0xa4, STOSD = 0xab, CMPSW = 0xa7;
  constexpr uint8_t JMP_REL8 = 0xeb, LOOP = 0xe2, PUSHFD = 0x9c, ADD_EAX_IB = 0x83, PUSH_SS = 0x16, POP_SS = 0x17;
  for (int i = 0; i < 270; ++i) {
    Case c = random_case(rng);
    c.gpr[ESI] = 64 + rng.below(16);
    c.gpr[EDI] = 160 + rng.below(16);
    c.gpr[ECX] = rng.below(5);
    c.gpr_rel = uint8_t(1u << ESI | 1u << EDI);
    c.mem.resize(256);
    for (auto& b : c.mem) b = uint8_t(rng.below(2));
    Asm x;
    const bool pop_ss = i % 9 == 8;
    if (pop_ss) x.op({PUSH_SS});
    x.op({PUSH_IZ}).d32(rng.flags(true) | fl::TF).op({POPFD});
    switch (i % 9) {
      case 8: x.op({POP_SS, INC_EAX}); break;  // the interrupt shadow delays the trap past INC (6.8.3)
      case 0: x.op({INC_EAX}); break;
      case 1: x.op({REP, MOVSB}); break;
      case 2: x.op({REP, STOSD}); break;
      case 3: x.op({REP, OSIZE, CMPSW}); break;
      case 4: x.op({JMP_REL8, 2, INC_EAX, INC_EAX}); break;
      case 5: x.op({LOOP, 1, INC_EAX}); break;
      case 6: x.op({PUSHFD}); break;
      case 7: x.op({ADD_EAX_IB, 0xc0, uint8_t(rng.u32())}); break;
    }
    x.op({INC_EAX, INC_EAX});  // never reached: the trap comes first
    x.into(c);
    out.push_back(std::move(c));
  }
}
CPU_DIFF_FAMILY(Misc, SingleStep, 256, gen_single_step)

}  // namespace
}  // namespace anykvm::difftest
