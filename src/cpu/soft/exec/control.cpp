// Near control transfers (SDM vol. 2): Jcc, JMP rel/r/m, CALL rel/r/m, RET and
// RET imm16, LOOP/LOOPE/LOOPNE, JCXZ/JECXZ. Targets are truncated to the operand
// size and checked against the CS limit (#GP(0)) before anything is pushed or
// committed. Far forms belong to the system area (events/far.cpp).
#include <utility>

#include "cpu/soft/exec/common.h"

namespace anykvm::soft::ex {
namespace {

template <typename T>
inline uint64_t rel_target(const Cpu& c, const Insn& i) {
  return uint64_t(T(next_ip(c, i) + i.imm));
}

template <typename T>
void h_jcc(Cpu& c, const Insn& i) {
  if (eval_cond(c, i.opcode & 0xf)) jump_to(c, rel_target<T>(c, i), sizeof(T));
  else advance(c, i);
}
// Jcc with the condition fixed at bind time (eval_cond folds to the one test).
template <unsigned CC, typename T>
void h_jcc_cc(Cpu& c, const Insn& i) {
  if (eval_cond(c, CC)) jump_to(c, rel_target<T>(c, i), sizeof(T));
  else advance(c, i);
}
template <typename T, unsigned... CC>
x86::Handler jcc_variant_of(unsigned cc, std::integer_sequence<unsigned, CC...>) {
  static constexpr x86::Handler k_by_cc[] = {h_jcc_cc<CC, T>...};
  return k_by_cc[cc & 0xf];
}
template <typename T>
x86::Handler jcc_variant(const Insn& i) {
  return jcc_variant_of<T>(i.opcode, std::make_integer_sequence<unsigned, 16>{});
}

template <typename T>
void h_jmp_rel(Cpu& c, const Insn& i) {
  jump_to(c, rel_target<T>(c, i), sizeof(T));
}
template <typename T>
void h_jmp_E(Cpu& c, const Insn& i) {
  jump_to(c, get_rm<T>(c, i), sizeof(T));
}

inline void check_cs_limit(const Cpu& c, uint64_t target) {
  if (!(c.long_mode() && c.seg[k_cs].l) && target > c.seg[k_cs].limit) throw fault(Vec::GP, 0);
}

template <typename T>
void h_call_rel(Cpu& c, const Insn& i) {
  uint64_t target = rel_target<T>(c, i);
  check_cs_limit(c, target);
  c.push<T>(T(next_ip(c, i)));
  c.rip = target;
}
template <typename T>
void h_call_E(Cpu& c, const Insn& i) {
  uint64_t target = get_rm<T>(c, i);
  check_cs_limit(c, target);
  c.push<T>(T(next_ip(c, i)));
  c.rip = target;
}
template <typename T>
void h_ret(Cpu& c, const Insn& i) {
  uint64_t target = stack_peek<T>(c, 0);
  check_cs_limit(c, target);
  uint64_t extra = i.opcode == 0xc2 ? uint16_t(i.imm) : 0;
  set_stack_ptr(c, (stack_ptr(c) + sizeof(T) + extra) & stack_mask(c));
  c.rip = target;
}

// E0 LOOPNE, E1 LOOPE, E2 LOOP: the counter (address size) decrements first.
template <typename T>
void h_loop(Cpu& c, const Insn& i) {
  uint64_t n = (get_count(c, i.addrsize) - 1) & addr_mask(i.addrsize);
  bool take = n != 0;
  if (i.opcode == 0xe0) take = take && !lazy_zf(c.lf);
  if (i.opcode == 0xe1) take = take && lazy_zf(c.lf);
  if (take) jump_to(c, rel_target<T>(c, i), sizeof(T));
  else advance(c, i);
  set_count(c, i.addrsize, n);
}
template <typename T>
void h_jcxz(Cpu& c, const Insn& i) {
  if (get_count(c, i.addrsize) == 0) jump_to(c, rel_target<T>(c, i), sizeof(T));
  else advance(c, i);
}

#define ANYKVM_V(fn) SizedHandler{nullptr, fn<uint16_t>, fn<uint32_t>, nullptr}

}  // namespace

void register_control(DispatchTable& t) {
  for (uint8_t cc = 0; cc < 16; ++cc) {
    t.set(key1(0x70 + cc), ANYKVM_V(h_jcc));
    t.set(key2(0x80 + cc), ANYKVM_V(h_jcc));
  }
  add_specializer(h_jcc<uint16_t>, jcc_variant<uint16_t>);
  add_specializer(h_jcc<uint32_t>, jcc_variant<uint32_t>);
  t.set(key1(0xeb), ANYKVM_V(h_jmp_rel));
  t.set(key1(0xe9), ANYKVM_V(h_jmp_rel));
  t.set(key1(0xff, 4), ANYKVM_V(h_jmp_E));
  t.set(key1(0xe8), ANYKVM_V(h_call_rel));
  t.set(key1(0xff, 2), ANYKVM_V(h_call_E));
  t.set(key1(0xc3), ANYKVM_V(h_ret));
  t.set(key1(0xc2), ANYKVM_V(h_ret));
  for (uint8_t op : {0xe0, 0xe1, 0xe2}) t.set(key1(op), ANYKVM_V(h_loop));
  t.set(key1(0xe3), ANYKVM_V(h_jcxz));
}

}  // namespace anykvm::soft::ex
