// Stack helpers: PUSH/POP through SS with the stack-address size from SS.B
// (SDM vol. 1, 6.2.3: 32-bit ESP when B = 1, else 16-bit SP with the upper half
// of ESP preserved). Memory is accessed before the stack pointer is committed,
// so a faulting push or pop leaves ESP unchanged. Included at the end of cpu.h.
#pragma once
#include <cstdint>

namespace anykvm::soft {

constexpr uint8_t k_stack_seg = 2;  // SS (cpu::SegReg order)

inline uint64_t stack_mask(const Cpu& c) { return c.stack32() ? 0xffffffffull : 0xffffull; }
inline uint64_t stack_ptr(const Cpu& c) { return c.gpr[4] & stack_mask(c); }
// Commit a new stack pointer of the current stack-address size.
inline void set_stack_ptr(Cpu& c, uint64_t sp) {
  if (c.stack32()) c.gpr[4] = uint32_t(sp);
  else c.gpr[4] = (c.gpr[4] & ~0xffffull) | (sp & 0xffff);
}
// Stack slot `off` bytes above the current top (for multi-pop instructions
// that read everything before committing).
template <typename T>
inline T stack_peek(Cpu& c, uint64_t off) {
  return c.read<T>(k_stack_seg, (stack_ptr(c) + off) & stack_mask(c));
}
// Store below the current top without committing (multi-push instructions).
template <typename T>
inline void stack_poke(Cpu& c, uint64_t below, T v) {
  c.write<T>(k_stack_seg, (stack_ptr(c) - below) & stack_mask(c), v);
}

template <typename T>
inline void Cpu::push(T v) {
  uint64_t sp = (stack_ptr(*this) - sizeof(T)) & stack_mask(*this);
  write<T>(k_stack_seg, sp, v);
  set_stack_ptr(*this, sp);
}

template <typename T>
inline T Cpu::pop() {
  uint64_t sp = stack_ptr(*this);
  T v = read<T>(k_stack_seg, sp);
  set_stack_ptr(*this, (sp + sizeof(T)) & stack_mask(*this));
  return v;
}

}  // namespace anykvm::soft
