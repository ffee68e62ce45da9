// Differential harness for the x87 unit: one code body (x87 instructions whose
// memory operands are all [ebx+disp], so the same bytes mean the same thing
// in the engine's flat 32-bit guest and in this 64-bit process) runs natively
// (called as a function from an RWX page, with the host's x87 state saved and
// restored around it) and in the engine (flat32 guest, EBX -> data block,
// body + HLT). Each side gets its own copy of a 1280-byte data block; the test
// compares the blocks afterwards. Bodies end with FNSAVE (non-waiting), so an
// unmasked exception never traps natively.
#pragma once
#include <gtest/gtest.h>
#include <sys/mman.h>

#include <array>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "../cpu_exec/harness.h"

namespace anykvm::test::x87 {

// 16-byte aligned for FXSAVE/FXRSTOR operands.
struct alignas(16) Block : std::array<uint8_t, 1280> {};

// Data block layout (offsets from EBX).
// Offsets below 0x80 fit a (signed) disp8; the others need ea32().
constexpr uint8_t D_FCW = 0x00, D_CC = 0x04, D_FLAGS = 0x08, D_B = 0x10, D_A = 0x20, D_MEM = 0x30,
                  D_SAVE = 0x40;
constexpr unsigned D_AUX = 0xc0;
constexpr unsigned D_BIG = 0x100, D_BIG2 = 0x300;  // 512 bytes each: FRSTOR/FXRSTOR images, FXSAVE output

// Common code pieces.
// Every physical register is set to +0 first: empty registers keep stale
// contents that FXAM (C1), FLDENV with a valid tag and FNSAVE expose.
inline std::vector<uint8_t> prologue() {
  std::vector<uint8_t> p = {0xdb, 0xe3};                        // fninit
  for (int i = 0; i < 8; ++i) p.insert(p.end(), {0xd9, 0xee});  // fldz
  p.insert(p.end(), {0xdb, 0xe3,                                // fninit
                     0xd9, 0x6b, D_FCW});                       // fldcw [ebx+D_FCW]
  return p;
}
inline const std::vector<uint8_t> k_fld_b = {0xdb, 0x6b, D_B};      // fld tword [ebx+D_B]
inline const std::vector<uint8_t> k_fld_a = {0xdb, 0x6b, D_A};      // fld tword [ebx+D_A]
inline const std::vector<uint8_t> k_fnsave = {0xdd, 0x73, D_SAVE};  // fnsave [ebx+D_SAVE]
inline const std::vector<uint8_t> k_setcc = {
    0x0f, 0x94, 0x63, D_CC,      // sete [ebx+D_CC]
    0x0f, 0x9a, 0x63, D_CC + 1,  // setp [ebx+D_CC+1]
    0x0f, 0x92, 0x63, D_CC + 2,  // setc [ebx+D_CC+2]
};
inline const std::vector<uint8_t> k_load_flags = {0xff, 0x73, D_FLAGS, 0x9d};  // push [ebx+D_FLAGS]; popf

// `op` with ModRM.reg = reg and operand [ebx+disp32] (any offset in the block).
inline std::vector<uint8_t> ea32(std::vector<uint8_t> op, unsigned reg, uint32_t disp) {
  op.push_back(uint8_t(0x83 | (reg << 3)));
  for (int i = 0; i < 4; ++i) op.push_back(uint8_t(disp >> (8 * i)));
  return op;
}

inline std::vector<uint8_t> cat(std::initializer_list<std::vector<uint8_t>> parts) {
  std::vector<uint8_t> r;
  for (auto& p : parts) r.insert(r.end(), p.begin(), p.end());
  return r;
}

class Native {
 public:
  static Native& get() {
    static Native n;
    return n;
  }
  bool available() const { return m_page != nullptr; }
  void run(const std::vector<uint8_t>& body, Block& data) {
    std::vector<uint8_t> code = {0x53, 0x48, 0x89, 0xfb};  // push rbx; mov rbx, rdi
    code.insert(code.end(), body.begin(), body.end());
    code.insert(code.end(), {0x5b, 0xc3});  // pop rbx; ret
    std::memcpy(m_page, code.data(), code.size());
    auto fn = reinterpret_cast<void (*)(void*)>(m_page);
    alignas(16) uint8_t host[512];
    asm volatile("fxsave %0" : "=m"(host)::"memory");
    fn(data.data());
    asm volatile("fxrstor %0" ::"m"(host) : "memory");
  }

 private:
  Native() {
    void* p = mmap(nullptr, 4096, PROT_READ | PROT_WRITE | PROT_EXEC, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    m_page = p == MAP_FAILED ? nullptr : static_cast<uint8_t*>(p);
  }
  uint8_t* m_page = nullptr;
};

// One engine guest per body (the code stays put; only data changes per run).
class Engine {
 public:
  static constexpr uint32_t k_code = 0x1000, k_data = 0x10000;
  explicit Engine(const std::vector<uint8_t>& body, uint64_t cr0_extra = 0, uint64_t cr4 = 0) {
    std::vector<uint8_t> code = body;
    code.push_back(0xf4);  // hlt
    g.load(k_code, code);
    g.flat32(k_code);
    cpu::SpecialRegs s = g.vcpu->get_sregs();
    s.cr0 |= cr0_extra;
    s.cr4 = cr4;
    EXPECT_TRUE(g.vcpu->set_sregs(s));
    m_len = code.size();
  }
  // Returns false (with a message) if the guest did not stop at the final HLT.
  bool run(Block& data, std::string* why = nullptr) {
    std::memcpy(&g.ram[k_data], data.data(), data.size());
    cpu::Regs r{};
    r.rip = k_code;
    r.rflags = 2;
    r.gpr[4] = 0x80000;
    r.gpr[3] = k_data;
    g.vcpu->set_regs(r);
    auto e = g.run();
    std::memcpy(data.data(), &g.ram[k_data], data.size());
    const uint64_t rip = g.regs().rip;
    if (e.reason != cpu::ExitReason::Hlt || rip != k_code + m_len) {
      if (why) *why = "exit " + std::to_string(int(e.reason)) + " rip " + std::to_string(rip);
      return false;
    }
    return true;
  }
  Guest g;

 private:
  size_t m_len = 0;
};

// 80-bit values.
struct F80 {
  uint64_t m;
  uint16_t se;
};
inline void put80(Block& b, unsigned off, F80 v) {
  std::memcpy(&b[off], &v.m, 8);
  std::memcpy(&b[off + 8], &v.se, 2);
}
inline std::string hex(const uint8_t* p, size_t n) {
  std::string s;
  char t[4];
  for (size_t i = 0; i < n; ++i) {
    std::snprintf(t, sizeof t, "%02x", p[i]);
    s += t;
  }
  return s;
}

// Interesting 80-bit operands: zeros, ones, denormals, pseudo-denormal,
// infinities, NaNs (quiet, signalling, indefinite), extremes, unnormal, ties.
inline std::vector<F80> special_values() {
  return {
      {0, 0x0000},                      // +0
      {0, 0x8000},                      // -0
      {0x8000000000000000ull, 0x3fff},  // 1
      {0x8000000000000000ull, 0xbfff},  // -1
      {0xc000000000000000ull, 0x4000},  // 3
      {0xa000000000000000ull, 0x4000},  // 2.5 (tie when rounded to integer)
      {0xe000000000000000ull, 0xc000},  // -3.5
      {0xc90fdaa22168c235ull, 0x4000},  // pi
      {0xaaaaaaaaaaaaaaabull, 0x3ffd},  // 1/3 (inexact in every precision)
      {0x0000000000000001ull, 0x0000},  // smallest denormal
      {0x4000000000000000ull, 0x8000},  // -denormal
      {0x8000000000000000ull, 0x0000},  // pseudo-denormal
      {0x8000000000000000ull, 0x0001},  // smallest normal
      {0xffffffffffffffffull, 0x7ffe},  // largest normal
      {0x8000000000000000ull, 0x7fff},  // +inf
      {0x8000000000000000ull, 0xffff},  // -inf
      {0xc000000000000000ull, 0x7fff},  // QNaN
      {0xa000000000000000ull, 0x7fff},  // SNaN
      {0xc000000000000000ull, 0xffff},  // indefinite
      {0x4000000000000000ull, 0x4000},  // unnormal (integer bit clear)
      {0x8000000000000000ull, 0x43fe},  // 2^1023 (double overflow with rounding up)
      {0x8000000000000000ull, 0x3f6a},  // 2^-149 (single denormal)
      {0xfffffffffffff800ull, 0x403d},  // near 2^63 (integer store edge)
      {0x8000000000000000ull, 0xc01e},  // -2^31
      {0xd9b8000000000000ull, 0x400e},  // 123456 (rough)
      {0x9c40000000000000ull, 0x4012},  // 10^? scale
  };
}

}  // namespace anykvm::test::x87
