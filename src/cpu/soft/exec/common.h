// Helpers shared by the integer instruction handlers (exec/*.cpp): effective
// addresses (SDM vol. 1, 3.7.5), r/m and reg operand access by operand size,
// RIP advance with the code size's wrap, and the registration macros that bind
// one handler template per operand size. Every handler reads memory (and
// checks writes) before it commits registers, per the cpu.h rules.
#pragma once
#include "cpu/soft/cpu.h"
#include "x86/decode/insn.h"

namespace anykvm::soft::ex {

using x86::DispatchTable;
using x86::Insn;
using x86::OpKey;
using x86::OpMap;
using x86::SizedHandler;

constexpr uint8_t k_es = 0, k_cs = 1, k_ss = 2, k_ds = 3;
constexpr unsigned k_rax = 0, k_rcx = 1, k_rdx = 2, k_rbx = 3, k_rsp = 4, k_rbp = 5, k_rsi = 6, k_rdi = 7;

inline uint64_t addr_mask(unsigned addrsize) {
  return addrsize == 2 ? 0xffffull : addrsize == 4 ? 0xffffffffull : ~0ull;
}

inline uint64_t ea(const Cpu& c, const Insn& i) {
  uint64_t a = uint64_t(i.disp);
  if (i.base != x86::k_no_reg) a += c.gpr[i.base];
  if (i.index != x86::k_no_reg) a += c.gpr[i.index] << i.scale;
  return a & addr_mask(i.addrsize);
}

inline uint64_t ip_mask(const Cpu& c) { return c.code32() ? 0xffffffffull : 0xffffull; }
inline uint64_t next_ip(const Cpu& c, const Insn& i) { return (c.rip + i.len) & ip_mask(c); }
inline void advance(Cpu& c, const Insn& i) { c.rip = next_ip(c, i); }

template <typename T>
inline T get_rm(Cpu& c, const Insn& i) {
  return i.mem ? c.read<T>(i.seg, ea(c, i)) : c.reg<T>(i.rm);
}
template <typename T>
inline void put_rm(Cpu& c, const Insn& i, T v) {
  if (i.mem) c.write<T>(i.seg, ea(c, i), v);
  else c.set_reg<T>(i.rm, v);
}
template <typename T>
inline T get_reg(const Cpu& c, const Insn& i) {
  return c.reg<T>(i.reg);
}
template <typename T>
inline void put_reg(Cpu& c, const Insn& i, T v) {
  c.set_reg<T>(i.reg, v);
}

// Signed view of an operand-size value.
template <typename T>
using Signed = std::make_signed_t<T>;

// Counter register of the address size (string ops, LOOP, JCXZ).
inline uint64_t get_count(const Cpu& c, unsigned addrsize) { return c.gpr[k_rcx] & addr_mask(addrsize); }
inline void set_count(Cpu& c, unsigned addrsize, uint64_t v) {
  if (addrsize == 2) c.gpr[k_rcx] = (c.gpr[k_rcx] & ~0xffffull) | (v & 0xffff);
  else c.gpr[k_rcx] = uint32_t(v);
}
// Index register (SI/DI) of the address size, updated in place.
inline void set_index(Cpu& c, unsigned r, unsigned addrsize, uint64_t v) {
  if (addrsize == 2) c.gpr[r] = (c.gpr[r] & ~0xffffull) | (v & 0xffff);
  else c.gpr[r] = uint32_t(v);
}

// Jump to `target` truncated to the operand size (SDM JMP: EIP <- tempEIP AND
// 0000FFFFH for 16-bit operands) with the CS limit check (#GP(0)).
inline void jump_to(Cpu& c, uint64_t target, unsigned opsize) {
  target &= opsize == 2 ? 0xffffull : 0xffffffffull;
  if (!(c.long_mode() && c.seg[k_cs].l) && target > c.seg[k_cs].limit) throw fault(Vec::GP, 0);
  c.rip = target;
}

[[noreturn]] inline void raise_ud() { throw fault(Vec::UD); }

// Registration helpers: one template instantiated per operand size.
#define ANYKVM_SIZED(fn) \
  ::anykvm::x86::SizedHandler { fn<uint8_t>, fn<uint16_t>, fn<uint32_t>, nullptr }
#define ANYKVM_SIZED1(fn, a) \
  ::anykvm::x86::SizedHandler { fn<a, uint8_t>, fn<a, uint16_t>, fn<a, uint32_t>, nullptr }

inline OpKey key1(uint8_t op, int8_t group = -1) { return OpKey{OpMap::OneByte, op, group}; }
inline OpKey key2(uint8_t op, int8_t group = -1) { return OpKey{OpMap::TwoByte, op, group}; }

// Registration entry points by ISA area (exec/*.cpp).
void register_alu(DispatchTable& t);
void register_muldiv(DispatchTable& t);
void register_bits(DispatchTable& t);
void register_data(DispatchTable& t);
void register_stack(DispatchTable& t);
void register_control(DispatchTable& t);
void register_string(DispatchTable& t);
void register_io(DispatchTable& t);
void register_bcd(DispatchTable& t);
void register_misc(DispatchTable& t);

}  // namespace anykvm::soft::ex

namespace anykvm::soft {
// All integer handlers (exec/), called by x86::dispatch_table().
void register_exec_handlers(x86::DispatchTable& t);
}  // namespace anykvm::soft
