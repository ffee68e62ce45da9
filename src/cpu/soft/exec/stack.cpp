// Stack instructions (SDM vol. 2): PUSH/POP of registers, memory, immediates and
// segment registers; PUSHA/POPA; ENTER (nesting levels) / LEAVE; LDS/LES/LFS/
// LGS/LSS; BOUND. Stack width from SS.B (stack_inl.h). Multi-slot instructions
// read or write every slot before committing ESP or registers. POP SS and LSS
// start the interrupt shadow (SDM vol. 3, 6.8.3).
#include "cpu/soft/exec/common.h"

namespace anykvm::soft::ex {
namespace {

template <typename T>
void h_push_Z(Cpu& c, const Insn& i) {
  c.push<T>(c.reg<T>(i.reg));  // PUSH ESP pushes the value before the push
  advance(c, i);
}
template <typename T>
void h_pop_Z(Cpu& c, const Insn& i) {
  T v = c.pop<T>();
  c.set_reg<T>(i.reg, v);  // POP ESP: the popped value replaces the incremented ESP
  advance(c, i);
}
template <typename T>
void h_push_I(Cpu& c, const Insn& i) {
  c.push<T>(T(i.imm));
  advance(c, i);
}
template <typename T>
void h_push_E(Cpu& c, const Insn& i) {
  T v = get_rm<T>(c, i);  // address computed with ESP before the push
  c.push<T>(v);
  advance(c, i);
}
// POP r/m: an ESP-based destination address uses ESP after the increment (SDM POP).
template <typename T>
void h_pop_E(Cpu& c, const Insn& i) {
  T v = stack_peek<T>(c, 0);
  uint64_t old = c.gpr[k_rsp];
  uint64_t nsp = (stack_ptr(c) + sizeof(T)) & stack_mask(c);
  if (i.mem) {
    set_stack_ptr(c, nsp);
    uint64_t a = ea(c, i);
    c.gpr[k_rsp] = old;
    c.write<T>(i.seg, a, v);
    set_stack_ptr(c, nsp);
  } else {
    set_stack_ptr(c, nsp);
    c.set_reg<T>(i.rm, v);
  }
  advance(c, i);
}

// Segment register from the opcode (06/07 ES, 0E CS, 16/17 SS, 1E/1F DS, 0F A0/A1 FS, 0F A8/A9 GS).
inline uint8_t sreg_of(const Insn& i) {
  if (i.map == OpMap::TwoByte) return i.opcode < 0xa8 ? 4 : 5;
  return uint8_t(i.opcode >> 3);
}
// A 32-bit push of a segment register writes only the low 16 bits (SDM PUSH,
// "the processor may use a 16-bit move"), ESP moves by 4.
template <typename T>
void h_push_S(Cpu& c, const Insn& i) {
  uint16_t sel = c.seg[sreg_of(i)].selector;
  uint64_t nsp = (stack_ptr(c) - sizeof(T)) & stack_mask(c);
  c.write<uint16_t>(k_ss, nsp, sel);
  set_stack_ptr(c, nsp);
  advance(c, i);
}
template <typename T>
void h_pop_S(Cpu& c, const Insn& i) {
  uint8_t s = sreg_of(i);
  uint16_t sel = stack_peek<uint16_t>(c, 0);
  uint64_t nsp = (stack_ptr(c) + sizeof(T)) & stack_mask(c);
  c.load_segment(s, sel);
  set_stack_ptr(c, nsp);
  if (s == k_ss) c.interrupt_shadow = 1;
  advance(c, i);
}

template <typename T>
void h_pusha(Cpu& c, const Insn& i) {
  T sp0 = c.reg<T>(k_rsp);
  for (unsigned r = 0; r < 8; ++r) stack_poke<T>(c, (r + 1) * sizeof(T), r == k_rsp ? sp0 : c.reg<T>(r));
  set_stack_ptr(c, (stack_ptr(c) - 8 * sizeof(T)) & stack_mask(c));
  advance(c, i);
}
template <typename T>
void h_popa(Cpu& c, const Insn& i) {
  T v[8];
  for (unsigned r = 0; r < 8; ++r) v[r] = stack_peek<T>(c, (7 - r) * sizeof(T));
  for (unsigned r = 0; r < 8; ++r)
    if (r != k_rsp) c.set_reg<T>(r, v[r]);
  set_stack_ptr(c, (stack_ptr(c) + 8 * sizeof(T)) & stack_mask(c));
  advance(c, i);
}

// ENTER imm16, imm8 (SDM ENTER operation, nesting level mod 32).
template <typename T>
void h_enter(Cpu& c, const Insn& i) {
  const uint64_t m = stack_mask(c);
  const unsigned level = unsigned(i.imm2) & 31;
  const uint16_t size = uint16_t(i.imm);
  uint64_t sp = stack_ptr(c);
  uint64_t bp = c.gpr[k_rbp] & m;
  sp = (sp - sizeof(T)) & m;
  c.write<T>(k_ss, sp, c.reg<T>(k_rbp));
  const uint64_t frame = sp;
  if (level > 0) {
    for (unsigned k = 1; k < level; ++k) {
      bp = (bp - sizeof(T)) & m;
      T v = c.read<T>(k_ss, bp);
      sp = (sp - sizeof(T)) & m;
      c.write<T>(k_ss, sp, v);
    }
    sp = (sp - sizeof(T)) & m;
    c.write<T>(k_ss, sp, T(frame));
  }
  sp = (sp - size) & m;
  c.set_reg<T>(k_rbp, T(frame));
  set_stack_ptr(c, sp);
  advance(c, i);
}
template <typename T>
void h_leave(Cpu& c, const Insn& i) {
  const uint64_t m = stack_mask(c);
  uint64_t bp = c.gpr[k_rbp] & m;
  T v = c.read<T>(k_ss, bp);
  set_stack_ptr(c, (bp + sizeof(T)) & m);
  c.set_reg<T>(k_rbp, v);
  advance(c, i);
}

// LDS/LES/LSS/LFS/LGS: offset then selector at ea + operand size.
template <typename T>
void h_lxs(Cpu& c, const Insn& i) {
  uint8_t s;
  if (i.map == OpMap::OneByte) s = i.opcode == 0xc4 ? k_es : k_ds;
  else s = i.opcode == 0xb2 ? k_ss : i.opcode == 0xb4 ? 4 : 5;
  uint64_t a = ea(c, i);
  T off = c.read<T>(i.seg, a);
  uint16_t sel = c.read<uint16_t>(i.seg, (a + sizeof(T)) & addr_mask(i.addrsize));
  c.load_segment(s, sel);
  put_reg<T>(c, i, off);
  if (s == k_ss) c.interrupt_shadow = 1;
  advance(c, i);
}

// BOUND r, m16&16 / m32&32: #BR when the signed index is outside [lower, upper].
template <typename T>
void h_bound(Cpu& c, const Insn& i) {
  uint64_t a = ea(c, i);
  Signed<T> lo = Signed<T>(c.read<T>(i.seg, a));
  Signed<T> hi = Signed<T>(c.read<T>(i.seg, (a + sizeof(T)) & addr_mask(i.addrsize)));
  Signed<T> idx = Signed<T>(get_reg<T>(c, i));
  if (idx < lo || idx > hi) throw fault(Vec::BR);
  advance(c, i);
}

#define ANYKVM_V(fn) SizedHandler{nullptr, fn<uint16_t>, fn<uint32_t>, nullptr}

}  // namespace

void register_stack(DispatchTable& t) {
  for (uint8_t r = 0; r < 8; ++r) {
    t.set(key1(0x50 + r), ANYKVM_V(h_push_Z));
    t.set(key1(0x58 + r), ANYKVM_V(h_pop_Z));
  }
  t.set(key1(0x68), ANYKVM_V(h_push_I));
  t.set(key1(0x6a), ANYKVM_V(h_push_I));
  t.set(key1(0xff, 6), ANYKVM_V(h_push_E));
  t.set(key1(0x8f, 0), ANYKVM_V(h_pop_E));
  for (uint8_t op : {0x06, 0x0e, 0x16, 0x1e}) t.set(key1(op), ANYKVM_V(h_push_S));
  for (uint8_t op : {0x07, 0x17, 0x1f}) t.set(key1(op), ANYKVM_V(h_pop_S));
  t.set(key2(0xa0), ANYKVM_V(h_push_S));
  t.set(key2(0xa8), ANYKVM_V(h_push_S));
  t.set(key2(0xa1), ANYKVM_V(h_pop_S));
  t.set(key2(0xa9), ANYKVM_V(h_pop_S));
  t.set(key1(0x60), ANYKVM_V(h_pusha));
  t.set(key1(0x61), ANYKVM_V(h_popa));
  t.set(key1(0xc8), ANYKVM_V(h_enter));
  t.set(key1(0xc9), ANYKVM_V(h_leave));
  for (uint8_t op : {0xc4, 0xc5}) t.set(key1(op), ANYKVM_V(h_lxs));
  for (uint8_t op : {0xb2, 0xb4, 0xb5}) t.set(key2(op), ANYKVM_V(h_lxs));
  t.set(key1(0x62), ANYKVM_V(h_bound));
}

}  // namespace anykvm::soft::ex
