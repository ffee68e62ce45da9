// A minimal x86-64 machine-code emitter for the block compiler (jit.cpp):
// only the forms it uses, encoded per the SDM vol. 2 (chapter 2, instruction
// format: REX, ModRM, SIB). Memory operands take the shortest displacement
// that holds theirs (none, 8 or 32 bits). Labels are
// resolved at the end (rel32 fixups).
#pragma once
#include <cstdint>
#include <cstring>
#include <vector>

namespace anykvm::soft::jit {

enum Reg : uint8_t { RAX, RCX, RDX, RBX, RSP, RBP, RSI, RDI, R8, R9, R10, R11, R12, R13, R14, R15 };
constexpr uint8_t k_no_index = 0xff;

// [base + index*scale + disp]
struct Mem {
  uint8_t base;
  int32_t disp = 0;
  uint8_t index = k_no_index;
  uint8_t scale = 0;  // log2
};

// Condition codes (tttn), as in the guest.
enum Cc : uint8_t { O, NO, B, AE, E, NE, BE, A, S, NS, P, NP, L, GE, LE, G };

class Asm {
 public:
  struct Label {
    int pos = -1;
    std::vector<int> fixups;  // positions of rel32 fields
  };

  // A dry assembler only counts bytes (the compiler's first pass, which
  // learns what the block assumes at entry).
  explicit Asm(bool dry = false) : m_dry(dry) {
    if (!dry) m_buf.resize(8192);
  }

  size_t size() const { return m_n; }
  void byte(uint8_t b) {
    if (!m_dry) {
      if (m_n == m_buf.size()) m_buf.resize(2 * m_buf.size());
      m_buf[m_n] = b;
    }
    ++m_n;
  }
  void u32(uint32_t v) {
    for (int i = 0; i < 4; ++i) byte(uint8_t(v >> (8 * i)));
  }
  void u64(uint64_t v) {
    for (int i = 0; i < 8; ++i) byte(uint8_t(v >> (8 * i)));
  }

  // ---- operands ----
  // Prefixes and REX for a reg / memory operand pair. `size` is the operand
  // size in bytes (1, 2, 4, 8); `byte_reg_rex` forces a REX for SPL..DIL.
  void prefix_mem(unsigned size, uint8_t reg, const Mem& m) {
    if (size == 2) byte(0x66);
    uint8_t rex = 0;
    if (size == 8) rex |= 8;
    if (reg & 8) rex |= 4;
    if (m.index != k_no_index && (m.index & 8)) rex |= 2;
    if (m.base & 8) rex |= 1;
    if (rex || (size == 1 && reg >= 4 && reg < 8)) byte(0x40 | rex);
  }
  // mod 00 (no displacement; not for RBP/R13, whose mod 00 means something
  // else), 01 (disp8) or 10 (disp32).
  void modrm_mem(uint8_t reg, const Mem& m) {
    const uint8_t mod = m.disp == 0 && (m.base & 7) != RBP ? 0x00 : m.disp >= -128 && m.disp <= 127 ? 0x40 : 0x80;
    if (m.index == k_no_index && (m.base & 7) != RSP) {
      byte(uint8_t(mod | ((reg & 7) << 3) | (m.base & 7)));
    } else {
      byte(uint8_t(mod | ((reg & 7) << 3) | 4));
      const uint8_t idx = m.index == k_no_index ? 4 : (m.index & 7);
      byte(uint8_t((m.scale << 6) | (idx << 3) | (m.base & 7)));
    }
    if (mod == 0x40) byte(uint8_t(int8_t(m.disp)));
    else if (mod == 0x80) u32(uint32_t(m.disp));
  }
  void prefix_rr(unsigned size, uint8_t reg, uint8_t rm) {
    if (size == 2) byte(0x66);
    uint8_t rex = 0;
    if (size == 8) rex |= 8;
    if (reg & 8) rex |= 4;
    if (rm & 8) rex |= 1;
    if (rex || (size == 1 && ((reg >= 4 && reg < 8) || (rm >= 4 && rm < 8)))) byte(0x40 | rex);
  }
  void modrm_rr(uint8_t reg, uint8_t rm) { byte(uint8_t(0xc0 | ((reg & 7) << 3) | (rm & 7))); }

  // op r, [m] / op [m], r with a one-byte opcode (byte form when size == 1: opcode - 1).
  void op_mem(uint8_t opc, unsigned size, uint8_t reg, const Mem& m) {
    prefix_mem(size, reg, m);
    byte(size == 1 ? uint8_t(opc - 1) : opc);
    modrm_mem(reg, m);
  }
  void op_rr(uint8_t opc, unsigned size, uint8_t reg, uint8_t rm) {
    prefix_rr(size, reg, rm);
    byte(size == 1 ? uint8_t(opc - 1) : opc);
    modrm_rr(reg, rm);
  }

  // ---- moves ----
  void mov_load(unsigned size, uint8_t r, const Mem& m) { op_mem(0x8b, size, r, m); }   // r = [m]
  void mov_store(unsigned size, const Mem& m, uint8_t r) { op_mem(0x89, size, r, m); }  // [m] = r
  void mov_rr(unsigned size, uint8_t dst, uint8_t src) { op_rr(0x89, size, src, dst); }
  // movzx/movsx r32, byte/word [m]
  void movx_load(bool sign, unsigned from, uint8_t r, const Mem& m) {
    prefix_mem(4, r, m);
    byte(0x0f);
    byte(uint8_t((sign ? 0xbe : 0xb6) + (from == 2 ? 1 : 0)));
    modrm_mem(r, m);
  }
  void movx_rr(bool sign, unsigned from, uint8_t dst, uint8_t src) {
    prefix_rr(from == 1 ? 1 : 4, dst, src);  // REX for SPL..DIL sources
    byte(0x0f);
    byte(uint8_t((sign ? 0xbe : 0xb6) + (from == 2 ? 1 : 0)));
    modrm_rr(dst, src);
  }
  void mov_imm32(uint8_t r, uint32_t v) {  // zero-extends
    if (r & 8) byte(0x41);
    byte(uint8_t(0xb8 + (r & 7)));
    u32(v);
  }
  void mov_imm64(uint8_t r, uint64_t v) {
    byte(uint8_t(0x48 | ((r & 8) ? 1 : 0)));
    byte(uint8_t(0xb8 + (r & 7)));
    u64(v);
  }
  void mov_mem_imm8(const Mem& m, uint8_t v) {
    prefix_mem(1, 0, m);
    byte(0xc6);
    modrm_mem(0, m);
    byte(v);
  }
  void lea(unsigned size, uint8_t r, const Mem& m) { op_mem(0x8d, size, r, m); }

  // ---- arithmetic (ALU op numbers as in the guest: 0 add .. 7 cmp) ----
  void alu_rr(unsigned aluop, unsigned size, uint8_t dst, uint8_t src) { op_rr(uint8_t(aluop * 8 + 1), size, src, dst); }
  void alu_load(unsigned aluop, unsigned size, uint8_t r, const Mem& m) { op_mem(uint8_t(aluop * 8 + 3), size, r, m); }
  void alu_store(unsigned aluop, unsigned size, const Mem& m, uint8_t r) { op_mem(uint8_t(aluop * 8 + 1), size, r, m); }
  void alu_imm(unsigned aluop, unsigned size, uint8_t r, int32_t imm) {
    prefix_rr(size, 0, r);
    if (size == 1) {
      byte(0x80);
      modrm_rr(uint8_t(aluop), r);
      byte(uint8_t(imm));
    } else if (imm >= -128 && imm <= 127) {
      byte(0x83);
      modrm_rr(uint8_t(aluop), r);
      byte(uint8_t(imm));
    } else {
      byte(0x81);
      modrm_rr(uint8_t(aluop), r);
      if (size == 2) {
        byte(uint8_t(imm));
        byte(uint8_t(imm >> 8));
      } else {
        u32(uint32_t(imm));
      }
    }
  }
  void alu_mem_imm(unsigned aluop, unsigned size, const Mem& m, int32_t imm) {
    prefix_mem(size, 0, m);
    if (size == 1) {
      byte(0x80);
      modrm_mem(uint8_t(aluop), m);
      byte(uint8_t(imm));
    } else {
      byte(0x81);
      modrm_mem(uint8_t(aluop), m);
      if (size == 2) {
        byte(uint8_t(imm));
        byte(uint8_t(imm >> 8));
      } else {
        u32(uint32_t(imm));
      }
    }
  }
  void test_rr(unsigned size, uint8_t a, uint8_t b) { op_rr(0x85, size, b, a); }
  void test_mem_imm8(const Mem& m, uint8_t v) {
    prefix_mem(1, 0, m);
    byte(0xf6);
    modrm_mem(0, m);
    byte(v);
  }
  void cmp_mem_imm8(const Mem& m, uint8_t v) {
    prefix_mem(1, 0, m);
    byte(0x80);
    modrm_mem(7, m);
    byte(v);
  }
  void cmp_mem_simm8(unsigned size, const Mem& m, int8_t v) {  // size 2, 4, 8
    prefix_mem(size, 0, m);
    byte(0x83);
    modrm_mem(7, m);
    byte(uint8_t(v));
  }
  void test_mem_imm32(const Mem& m, uint32_t v) {
    prefix_mem(4, 0, m);
    byte(0xf7);
    modrm_mem(0, m);
    u32(v);
  }
  void imul_imm(unsigned size, uint8_t dst, uint8_t src, int32_t imm) {
    prefix_rr(size, dst, src);
    byte(0x69);
    modrm_rr(dst, src);
    u32(uint32_t(imm));
  }
  void bt_rr(uint8_t base, uint8_t bit) {  // CF = bit `bit` of `base` (32-bit)
    prefix_rr(4, bit, base);
    byte(0x0f);
    byte(0xa3);
    modrm_rr(bit, base);
  }
  // F7/F6 group on a register: 2 not, 3 neg; FF/FE: 0 inc, 1 dec.
  void grp3_r(unsigned sub, unsigned size, uint8_t r) { op_rr(0xf7, size, uint8_t(sub), r); }
  void incdec_r(bool dec, unsigned size, uint8_t r) { op_rr(0xff, size, dec ? 1 : 0, r); }
  void incdec_mem(bool dec, unsigned size, const Mem& m) { op_mem(0xff, size, dec ? 1 : 0, m); }
  // C1/C0 group 2 by imm8 (4 shl, 5 shr, 7 sar, 0 rol, 1 ror).
  void shift_imm(unsigned sub, unsigned size, uint8_t r, uint8_t count) {
    prefix_rr(size, 0, r);
    byte(size == 1 ? 0xc0 : 0xc1);
    modrm_rr(uint8_t(sub), r);
    byte(count);
  }
  void shift_imm64(unsigned sub, uint8_t r, uint8_t count) { shift_imm(sub, 8, r, count); }
  void and_imm64(uint8_t r, int32_t imm) { alu_imm(4, 8, r, imm); }
  void imul_rr(unsigned size, uint8_t dst, uint8_t src) {
    prefix_rr(size, dst, src);
    byte(0x0f);
    byte(0xaf);
    modrm_rr(dst, src);
  }

  // ---- flags ----
  void pushfq() { byte(0x9c); }
  void pop(uint8_t r) {
    if (r & 8) byte(0x41);
    byte(uint8_t(0x58 + (r & 7)));
  }
  void push(uint8_t r) {
    if (r & 8) byte(0x41);
    byte(uint8_t(0x50 + (r & 7)));
  }
  void lahf() { byte(0x9f); }
  void sahf() { byte(0x9e); }
  void setcc(Cc cc, uint8_t r) {  // r: AL/CL/DL/BL only
    byte(0x0f);
    byte(uint8_t(0x90 + cc));
    modrm_rr(0, r);
  }
  void add_al_imm8(uint8_t v) {
    byte(0x04);
    byte(v);
  }

  // ---- control ----
  void bind(Label& l) {
    l.pos = int(size());
    for (int f : l.fixups) patch32(f, uint32_t(l.pos - (f + 4)));
    l.fixups.clear();
  }
  void jcc(Cc cc, Label& l) {
    byte(0x0f);
    byte(uint8_t(0x80 + cc));
    rel32(l);
  }
  void jmp(Label& l) {
    byte(0xe9);
    rel32(l);
  }
  // jmp/call to an absolute address outside the buffer: resolved at placement.
  struct AbsFixup {
    int pos;
    uint64_t target;
  };
  std::vector<AbsFixup> abs_fixups;
  void call_abs(uint64_t target) {
    byte(0xe8);
    abs_fixups.push_back({int(size()), target});
    u32(0);
  }
  void jmp_abs(uint64_t target) {
    byte(0xe9);
    abs_fixups.push_back({int(size()), target});
    u32(0);
  }
  void jmp_r(uint8_t r) {
    if (r & 8) byte(0x41);
    byte(0xff);
    modrm_rr(4, r);
  }
  void ret() { byte(0xc3); }

  // Copy to `dst` (its final address) and resolve the absolute fixups;
  // false when a target is out of rel32 reach.
  bool place(uint8_t* dst) const {
    std::memcpy(dst, m_buf.data(), m_n);
    for (const AbsFixup& f : abs_fixups) {
      const int64_t rel = int64_t(f.target) - int64_t(uint64_t(dst) + f.pos + 4);
      if (rel != int32_t(rel)) return false;
      const uint32_t r = uint32_t(int32_t(rel));
      std::memcpy(dst + f.pos, &r, 4);
    }
    return true;
  }

 private:
  void rel32(Label& l) {
    const int at = int(size());
    u32(0);
    if (l.pos >= 0) patch32(at, uint32_t(l.pos - (at + 4)));
    else l.fixups.push_back(at);
  }
  void patch32(int at, uint32_t v) {
    if (!m_dry) std::memcpy(&m_buf[size_t(at)], &v, 4);
  }
  std::vector<uint8_t> m_buf;  // capacity; the code is the first m_n bytes
  size_t m_n = 0;
  bool m_dry;
};

}  // namespace anykvm::soft::jit
