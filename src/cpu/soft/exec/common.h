// Helpers shared by the integer instruction handlers (exec/*.cpp): effective
// addresses (SDM vol. 1, 3.7.5), r/m and reg operand access by operand size,
// RIP advance with the code size's wrap, and the registration macros that bind
// one handler template per operand size, plus the operand-form (Rm) variants
// bound per decoded instruction. Every handler reads memory (and
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

// Operand forms of a ModRM r/m operand. Handlers take one as a template
// parameter (default Dyn: test Insn::mem and compute the address generally);
// bind_handler (dispatch.cpp) swaps in the variant for the decoded form, so the
// hot forms run without the mem / base / index / address-size branches, which
// an indirect-called handler shared by all forms predicts badly.
//   Reg    mod == 3
//   MemB   32-bit addressing, [base + disp]
//   MemBI  32-bit addressing, [base + index*scale + disp]
//   MemD   32-bit addressing, [disp32]
enum class Rm : uint8_t { Dyn, Reg, MemB, MemBI, MemD };

template <Rm M>
inline bool rm_is_mem(const Insn& i) {
  if constexpr (M == Rm::Dyn) return i.mem;
  else return M != Rm::Reg;
}
template <Rm M>
inline uint64_t ea_rm(const Cpu& c, const Insn& i) {
  if constexpr (M == Rm::MemB) return uint32_t(c.gpr[i.base] + uint64_t(i.disp));
  else if constexpr (M == Rm::MemBI) return uint32_t(c.gpr[i.base] + (c.gpr[i.index] << i.scale) + uint64_t(i.disp));
  else if constexpr (M == Rm::MemD) return uint32_t(uint64_t(i.disp));
  else return ea(c, i);
}

template <typename T, Rm M = Rm::Dyn>
inline T get_rm(Cpu& c, const Insn& i) {
  return rm_is_mem<M>(i) ? c.read<T>(i.seg, ea_rm<M>(c, i)) : c.reg<T>(i.rm);
}
template <typename T, Rm M = Rm::Dyn>
inline void put_rm(Cpu& c, const Insn& i, T v) {
  if (rm_is_mem<M>(i)) c.write<T>(i.seg, ea_rm<M>(c, i), v);
  else c.set_reg<T>(i.rm, v);
}

// Specialization at bind time: `generic` is a registered handler; the
// specializer returns the handler to use for a decoded instruction, or nullptr
// to keep `generic`. Registered by the exec areas next to their table entries.
using Specializer = x86::Handler (*)(const Insn&);
void add_specializer(x86::Handler generic, Specializer s);

// The Rm variant matching a decoded ModRM operand (nullptr: keep the generic one).
template <x86::Handler R, x86::Handler B, x86::Handler BI, x86::Handler D>
x86::Handler rm_variant(const Insn& i) {
  if (!i.has_modrm) return nullptr;
  if (!i.mem) return R;
  if (i.addrsize != 4 || i.rip_relative) return nullptr;
  if (i.base != x86::k_no_reg) return i.index != x86::k_no_reg ? BI : B;
  return i.index == x86::k_no_reg ? D : nullptr;
}
// ANYKVM_SPECIALIZE_RM(h_foo<A, uint32_t) registers h_foo<A, uint32_t>'s Rm
// variants (the handler's last template parameter is its Rm form).
#define ANYKVM_RM_V(M, ...) __VA_ARGS__, ::anykvm::soft::ex::Rm::M>
#define ANYKVM_SPECIALIZE_RM(...)                                                                      \
  ::anykvm::soft::ex::add_specializer(                                                                 \
      ANYKVM_RM_V(Dyn, __VA_ARGS__),                                                                   \
      ::anykvm::soft::ex::rm_variant<ANYKVM_RM_V(Reg, __VA_ARGS__), ANYKVM_RM_V(MemB, __VA_ARGS__),    \
                                     ANYKVM_RM_V(MemBI, __VA_ARGS__), ANYKVM_RM_V(MemD, __VA_ARGS__)>)
#define ANYKVM_SPECIALIZE_RM_SIZED(fn) \
  do {                                 \
    ANYKVM_SPECIALIZE_RM(fn<uint8_t);  \
    ANYKVM_SPECIALIZE_RM(fn<uint16_t); \
    ANYKVM_SPECIALIZE_RM(fn<uint32_t); \
  } while (0)
#define ANYKVM_SPECIALIZE_RM_SIZED1(fn, a) \
  do {                                     \
    ANYKVM_SPECIALIZE_RM(fn<a, uint8_t);   \
    ANYKVM_SPECIALIZE_RM(fn<a, uint16_t);  \
    ANYKVM_SPECIALIZE_RM(fn<a, uint32_t);  \
  } while (0)
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

// BT/BTS/BTR/BTC m, r: the signed register bit offset selects the operand
// `size` bytes wide at ea + (offset >> log2(bits)) * size (SDM BT, "bit base +
// offset"). Returns that address; the bit within it is offset & (bits - 1).
inline uint64_t bt_operand_address(const Insn& i, uint64_t ea, int64_t offset, unsigned size) {
  return (ea + uint64_t((offset >> (size == 2 ? 4 : 5)) * int64_t(size))) & addr_mask(i.addrsize);
}

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
