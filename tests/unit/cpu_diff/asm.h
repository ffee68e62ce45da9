// A tiny assembler-free encoder for the 32-bit forms the families generate
// (SDM vol. 2, ch. 2: legacy prefixes, opcode, ModRM with mod=11 register or
// mod=00 rm=101 disp32 absolute memory, immediates), plus helpers that put
// operand values into a Case's registers. Memory operands are offsets into the
// case's window, relocated to absolute addresses when the batch is laid out.
#pragma once
#include <algorithm>
#include <initializer_list>
#include <vector>

#include "diff.h"

namespace anykvm::difftest {

constexpr uint8_t OSIZE = 0x66;  // operand-size prefix
constexpr uint8_t ASIZE = 0x67;  // address-size prefix
constexpr uint8_t LOCK = 0xf0, REP = 0xf3, REPNE = 0xf2;
constexpr uint8_t TWO_BYTE = 0x0f;
constexpr uint8_t SEG_GS = 0x65;

inline uint32_t width_mask(unsigned bits) { return bits == 32 ? 0xffffffffu : (1u << bits) - 1; }
inline uint32_t sign_bit(unsigned bits) { return 1u << (bits - 1); }

struct Asm {
  std::vector<uint8_t> b;
  std::vector<uint8_t> relocs;
  std::vector<uint8_t> relocs16;

  Asm& op(std::initializer_list<uint8_t> v) {
    b.insert(b.end(), v);
    return *this;
  }
  // 66 for 16-bit operands (the code segment is 32-bit).
  Asm& osize(unsigned bits) {
    if (bits == 16) b.push_back(OSIZE);
    return *this;
  }
  // The byte form of an opcode for 8-bit operands, else the v form (opc8 + 1 for most rows).
  Asm& opc(unsigned bits, uint8_t opc8, uint8_t opcv) {
    osize(bits);
    b.push_back(bits == 8 ? opc8 : opcv);
    return *this;
  }
  Asm& rr(unsigned reg, unsigned rm) {  // ModRM mod=11
    b.push_back(uint8_t(0xc0 | (reg & 7) << 3 | (rm & 7)));
    return *this;
  }
  Asm& mem(unsigned reg, uint32_t window_off) {  // ModRM mod=00 rm=101: [disp32]
    b.push_back(uint8_t((reg & 7) << 3 | 5));
    relocs.push_back(uint8_t(b.size()));
    return d32(window_off);
  }
  // 16-bit addressing (SDM vol. 2, table 2-1): ModRM with mod 0-2 and rm 0-7
  // plus disp8/disp16; mod=00 rm=110 is [disp16], relocated like gpr_rel16
  // registers. The caller emits 67 and the GS override (see Case::seg16).
  Asm& mem16(unsigned reg, unsigned mod, unsigned rm, uint32_t disp) {
    b.push_back(uint8_t(mod << 6 | (reg & 7) << 3 | (rm & 7)));
    if (mod == 1) return i8(disp);
    if (mod == 2) return i16(disp);
    if (rm == 6) {
      relocs16.push_back(uint8_t(b.size()));
      return i16(disp);
    }
    return *this;
  }
  Asm& i8(uint32_t v) {
    b.push_back(uint8_t(v));
    return *this;
  }
  Asm& i16(uint32_t v) { return i8(v).i8(v >> 8); }
  Asm& d32(uint32_t v) { return i16(v).i16(v >> 16); }
  Asm& imm(unsigned bits, uint32_t v) { return bits == 8 ? i8(v) : bits == 16 ? i16(v) : d32(v); }

  // Moves the encoding into a case (keeps its registers and flags).
  void into(Case& c) {
    c.code = std::move(b);
    c.relocs = std::move(relocs);
    c.relocs16 = std::move(relocs16);
  }
};

// A case with random registers and status flags.
inline Case random_case(Rng& rng, bool random_df = false) {
  Case c;
  for (auto& g : c.gpr) g = rng.u32();
  c.eflags = rng.flags(random_df);
  return c;
}

// Register operand access by width (8-bit numbers are AL..BH, SDM table 2-1).
inline void set_reg(Case& c, unsigned bits, unsigned r, uint32_t v) {
  if (bits == 8) {
    unsigned shift = r < 4 ? 0 : 8;
    uint32_t& g = c.gpr[r & 3];
    g = (g & ~(0xffu << shift)) | ((v & 0xff) << shift);
  } else {
    uint32_t m = width_mask(bits);
    c.gpr[r] = (c.gpr[r] & ~m) | (v & m);
  }
}

// Two distinct operand registers (not ESP for 16/32 bits) chosen from `sel`.
inline void pick_two(unsigned bits, uint32_t sel, unsigned& a, unsigned& b) {
  static const unsigned r32[] = {EAX, ECX, EDX, EBX, EBP, ESI, EDI};
  if (bits == 8) {
    a = sel & 7;
    b = (a + 1 + (sel >> 3) % 7) & 7;
  } else {
    a = r32[sel % 7];
    b = r32[(sel % 7 + 1 + (sel >> 3) % 6) % 7];
  }
}

// Edge operands for a width: 0, 1, all ones, the sign boundaries and neighbours.
inline std::vector<uint32_t> edges(unsigned bits) {
  std::vector<uint32_t> v = {0, 1, 2};
  uint32_t m = width_mask(bits), s = sign_bit(bits);
  for (uint32_t x : {s - 2, s - 1, s, s + 1, m - 1, m, 0x7fu, 0x80u, 0xffu, 0x100u, 0x7fffu, 0x8000u, 0xffffu, 0x10000u})
    v.push_back(x & m);
  std::sort(v.begin(), v.end());
  v.erase(std::unique(v.begin(), v.end()), v.end());
  return v;
}

// Operand pairs: every edge x edge pair, then `random` random pairs.
inline std::vector<std::pair<uint32_t, uint32_t>> operand_pairs(Rng& rng, unsigned bits, size_t random) {
  std::vector<std::pair<uint32_t, uint32_t>> v;
  if (bits == 8) {  // every pair: cheap enough
    for (uint32_t a = 0; a < 256; ++a)
      for (uint32_t b = 0; b < 256; ++b) v.emplace_back(a, b);
    return v;
  }
  auto e = edges(bits);
  for (uint32_t a : e)
    for (uint32_t b : e) v.emplace_back(a, b);
  for (size_t i = 0; i < random; ++i) v.emplace_back(rng.u32() & width_mask(bits), rng.u32() & width_mask(bits));
  return v;
}

}  // namespace anykvm::difftest
