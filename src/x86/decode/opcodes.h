// The opcode catalogue (opcodes.def) as data: operand codes in the SDM's
// notation (vol. 2, appendix A.2), row attributes and the row array every
// consumer (decoder, disassembler, tests) reads. Leaves out: 0F 38/0F 3A maps.
#pragma once
#include <cstddef>
#include <cstdint>
#include <span>

#include "x86/decode/insn.h"

namespace anykvm::x86 {

// Operand codes. Letters follow the SDM: E = ModRM r/m (register or memory),
// G = ModRM.reg general register, I = immediate, J = relative offset, O = moffs,
// M = memory only, S = segment register (reg), C/D = control/debug register,
// R = r/m general register only, X/Y = DS:rSI / ES:rDI string operands,
// P/Q/N = MMX reg / r/m / r/m register, V/W/U = XMM reg / r/m / r/m register.
// Sizes: b byte, w word, d dword, q qword, v 16/32(/64) by operand size, z 16/32,
// p far pointer, a BOUND pair, x XMM, y dword (qword with REX.W).
// Zb/Zv: the register in the opcode's low three bits. Ibs: imm8 sign-extended.
enum class Opnd : uint8_t {
  None,
  Eb, Ew, Ev, Ey, Gb, Gw, Gv, Gy, M, Mp, Ma, Mq, Sw, Cd, Dd, Rd,
  Ib, Ibs, Iw, Iz, Iv, Jb, Jz, Ap, Ob, Ov,
  Zb, Zv, AL, eAX, CL, DX, One, ES, CS, SS, DS, FS, GS,
  Xb, Xv, Yb, Yv,
  Pq, Qq, Nq, Vx, Wx, Ux,
};

// Row attributes.
enum : uint16_t {
  A_L = 1 << 0,      // LOCK allowed (with a memory destination)
  A_MO = 1 << 1,     // memory form only (mod != 3)
  A_RO = 1 << 2,     // register form only (mod == 3)
  A_END = 1 << 3,    // ends a decoded block
  A_MODRM = 1 << 4,  // has ModRM although no operand says so
};

// Prefix column: ANY = the row ignores mandatory prefixes (66/F2/F3 keep their
// legacy meaning); the others select a SIMD form.
enum class RowPrefix : uint8_t { ANY, NP, P66, PF3, PF2 };

struct OpcodeRow {
  OpMap map;
  uint8_t opcode;
  RowPrefix prefix;
  int8_t group;
  const char* mnemonic;
  Opnd op[3];
  uint16_t attrs;
};

std::span<const OpcodeRow> opcode_rows();

// Operand helpers shared by the decoder and the disassembler.
constexpr bool opnd_uses_modrm(Opnd o) {
  switch (o) {
    case Opnd::Eb: case Opnd::Ew: case Opnd::Ev: case Opnd::Ey: case Opnd::Gb: case Opnd::Gw: case Opnd::Gv:
    case Opnd::Gy: case Opnd::M: case Opnd::Mp: case Opnd::Ma: case Opnd::Mq: case Opnd::Sw: case Opnd::Cd:
    case Opnd::Dd: case Opnd::Rd: case Opnd::Pq: case Opnd::Qq: case Opnd::Nq: case Opnd::Vx: case Opnd::Wx:
    case Opnd::Ux:
      return true;
    default:
      return false;
  }
}
constexpr bool opnd_is_byte(Opnd o) {
  return o == Opnd::Eb || o == Opnd::Gb || o == Opnd::Zb || o == Opnd::AL || o == Opnd::Ob || o == Opnd::Xb ||
         o == Opnd::Yb;
}
// A row operates on bytes (Insn::opsize = 1): its destination is byte-sized, or
// it is a port write of AL (OUT imm8/DX, AL; OUTSB).
constexpr bool row_is_byte(const OpcodeRow& r) {
  if (opnd_is_byte(r.op[0])) return true;
  return (r.op[0] == Opnd::Ib || r.op[0] == Opnd::DX) && opnd_is_byte(r.op[1]);
}

}  // namespace anykvm::x86
