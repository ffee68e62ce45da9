// Data movement and simple flag instructions (SDM vol. 2): MOV (all forms incl.
// moffs, Sreg), MOVZX/MOVSX, LEA, XCHG, XADD, CMPXCHG, CMPXCHG8B, CMOVcc, SETcc,
// CBW/CWDE/CWD/CDQ, LAHF/SAHF, CLC/STC/CMC/CLD/STD, BSWAP lives in bits.cpp.
// MOV SS starts the interrupt shadow (SDM vol. 3, 6.8.3).
#include "cpu/soft/exec/common.h"

namespace anykvm::soft::ex {
namespace {

template <typename T, Rm M = Rm::Dyn>
void h_mov_EG(Cpu& c, const Insn& i) {
  put_rm<T, M>(c, i, get_reg<T>(c, i));
  advance(c, i);
}
template <typename T, Rm M = Rm::Dyn>
void h_mov_GE(Cpu& c, const Insn& i) {
  put_reg<T>(c, i, get_rm<T, M>(c, i));
  advance(c, i);
}
template <typename T, Rm M = Rm::Dyn>
void h_mov_EI(Cpu& c, const Insn& i) {
  put_rm<T, M>(c, i, T(i.imm));
  advance(c, i);
}
template <typename T>
void h_mov_ZI(Cpu& c, const Insn& i) {
  c.set_reg<T>(i.reg, T(i.imm));
  advance(c, i);
}
// A0-A3: moffs forms (the decoder stores the offset as a base-less memory operand).
template <typename T>
void h_mov_A_O(Cpu& c, const Insn& i) {
  c.set_reg<T>(k_rax, c.read<T>(i.seg, ea(c, i)));
  advance(c, i);
}
template <typename T>
void h_mov_O_A(Cpu& c, const Insn& i) {
  c.write<T>(i.seg, ea(c, i), c.reg<T>(k_rax));
  advance(c, i);
}

// 8C: MOV r/m, Sreg. A register destination gets the zero-extended selector
// with a 32-bit operand size; memory always receives 16 bits.
template <typename T>
void h_mov_E_S(Cpu& c, const Insn& i) {
  if (i.reg > 5) raise_ud();
  uint16_t sel = c.seg[i.reg].selector;
  if (i.mem) c.write<uint16_t>(i.seg, ea(c, i), sel);
  else c.set_reg<T>(i.rm, T(sel));
  advance(c, i);
}
void h_mov_S_E(Cpu& c, const Insn& i) {
  if (i.reg > 5 || i.reg == k_cs) raise_ud();
  uint16_t sel = get_rm<uint16_t>(c, i);
  c.load_segment(i.reg, sel);
  if (i.reg == k_ss) c.interrupt_shadow = 1;
  advance(c, i);
}

// LEA with a register operand is #UD (decoder); its Reg variant is the generic one.
template <typename T, Rm M = Rm::Dyn>
void h_lea(Cpu& c, const Insn& i) {
  put_reg<T>(c, i, T(ea_rm<M == Rm::Reg ? Rm::Dyn : M>(c, i)));
  advance(c, i);
}

template <typename S, bool SIGN, typename T, Rm M = Rm::Dyn>
void h_movx(Cpu& c, const Insn& i) {
  S v = get_rm<S, M>(c, i);
  T r = SIGN ? T(std::make_signed_t<T>(std::make_signed_t<S>(v))) : T(v);
  put_reg<T>(c, i, r);
  advance(c, i);
}

template <typename T>
void h_xchg_EG(Cpu& c, const Insn& i) {
  T r = get_reg<T>(c, i);
  T m = get_rm<T>(c, i);
  put_rm<T>(c, i, r);
  put_reg<T>(c, i, m);
  advance(c, i);
}
template <typename T>
void h_xchg_Z(Cpu& c, const Insn& i) {
  T a = c.reg<T>(k_rax);
  c.set_reg<T>(k_rax, c.reg<T>(i.reg));
  c.set_reg<T>(i.reg, a);
  advance(c, i);
}

template <typename T>
void h_xadd(Cpu& c, const Insn& i) {
  T s = get_reg<T>(c, i);
  uint64_t a = i.mem ? ea(c, i) : 0;
  T d = i.mem ? c.read<T>(i.seg, a) : c.reg<T>(i.rm);
  T r = T(d + s);
  if (i.mem) c.write<T>(i.seg, a, r);
  put_reg<T>(c, i, d);
  if (!i.mem) c.set_reg<T>(i.rm, r);
  set_lazy<T>(c, FlagOp::Add, d, s, r);
  advance(c, i);
}

// CMPXCHG: flags as CMP accumulator, destination (SDM CMPXCHG).
template <typename T>
void h_cmpxchg(Cpu& c, const Insn& i) {
  T acc = c.reg<T>(k_rax);
  T s = get_reg<T>(c, i);
  uint64_t a = i.mem ? ea(c, i) : 0;
  T d = i.mem ? c.read<T>(i.seg, a) : c.reg<T>(i.rm);
  if (acc == d) {
    if (i.mem) c.write<T>(i.seg, a, s);
    else c.set_reg<T>(i.rm, s);
  } else {
    // The destination is written back with its own value on failure.
    if (i.mem) c.write<T>(i.seg, a, d);
    c.set_reg<T>(k_rax, d);
  }
  set_lazy<T>(c, FlagOp::Sub, acc, d, T(acc - d));
  advance(c, i);
}

void h_cmpxchg8b(Cpu& c, const Insn& i) {
  uint64_t a = ea(c, i);
  c.check_write(i.seg, a, 8);
  uint64_t m = c.read<uint64_t>(i.seg, a);
  uint64_t cmp = (uint64_t(uint32_t(c.gpr[k_rdx])) << 32) | uint32_t(c.gpr[k_rax]);
  uint32_t f = lazy_arith_flags(c.lf);
  if (m == cmp) {
    c.write<uint64_t>(i.seg, a, (uint64_t(uint32_t(c.gpr[k_rcx])) << 32) | uint32_t(c.gpr[k_rbx]));
    f |= fl::ZF;
  } else {
    c.write<uint64_t>(i.seg, a, m);
    c.gpr[k_rax] = uint32_t(m);
    c.gpr[k_rdx] = uint32_t(m >> 32);
    f &= ~fl::ZF;
  }
  set_flags_materialized(c, f);
  advance(c, i);
}

template <typename T, Rm M = Rm::Dyn>
void h_cmov(Cpu& c, const Insn& i) {
  T v = get_rm<T, M>(c, i);  // the source is read (and may fault) whatever the condition
  if (eval_cond(c, i.opcode & 0xf)) put_reg<T>(c, i, v);
  advance(c, i);
}
void h_setcc(Cpu& c, const Insn& i) {
  put_rm<uint8_t>(c, i, eval_cond(c, i.opcode & 0xf) ? 1 : 0);
  advance(c, i);
}

// 98: CBW/CWDE; 99: CWD/CDQ.
template <typename T>
void h_cbw(Cpu& c, const Insn& i) {
  if constexpr (sizeof(T) == 2) c.set_reg<uint16_t>(k_rax, uint16_t(int16_t(int8_t(c.gpr[k_rax]))));
  else c.set_reg<uint32_t>(k_rax, uint32_t(int32_t(int16_t(c.gpr[k_rax]))));
  advance(c, i);
}
template <typename T>
void h_cwd(Cpu& c, const Insn& i) {
  T a = c.reg<T>(k_rax);
  c.set_reg<T>(k_rdx, Signed<T>(a) < 0 ? T(~T(0)) : T(0));
  advance(c, i);
}

// LAHF/SAHF move SF ZF AF PF CF through AH (bit 1 reads as 1).
constexpr uint32_t k_ah_flags = fl::SF | fl::ZF | fl::AF | fl::PF | fl::CF;
void h_lahf(Cpu& c, const Insn& i) {
  uint8_t v = uint8_t((lazy_arith_flags(c.lf) & k_ah_flags) | fl::FIXED1);
  c.set_reg<uint8_t>(4, v);  // AH
  advance(c, i);
}
void h_sahf(Cpu& c, const Insn& i) {
  uint32_t f = lazy_arith_flags(c.lf);
  f = (f & ~k_ah_flags) | (c.reg<uint8_t>(4) & k_ah_flags);
  set_flags_materialized(c, f);
  advance(c, i);
}

void h_clc(Cpu& c, const Insn& i) { lazy_set_cf(c, false); advance(c, i); }
void h_stc(Cpu& c, const Insn& i) { lazy_set_cf(c, true); advance(c, i); }
void h_cmc(Cpu& c, const Insn& i) { lazy_set_cf(c, !lazy_cf(c.lf)); advance(c, i); }
void h_cld(Cpu& c, const Insn& i) { c.eflags_rest &= ~fl::DF; advance(c, i); }
void h_std(Cpu& c, const Insn& i) { c.eflags_rest |= fl::DF; advance(c, i); }

#define ANYKVM_V(fn) SizedHandler{nullptr, fn<uint16_t>, fn<uint32_t>, nullptr}

}  // namespace

void register_data(DispatchTable& t) {
  t.set(key1(0x88), ANYKVM_SIZED(h_mov_EG));
  t.set(key1(0x89), ANYKVM_SIZED(h_mov_EG));
  t.set(key1(0x8a), ANYKVM_SIZED(h_mov_GE));
  t.set(key1(0x8b), ANYKVM_SIZED(h_mov_GE));
  t.set(key1(0xc6, 0), ANYKVM_SIZED(h_mov_EI));
  t.set(key1(0xc7, 0), ANYKVM_SIZED(h_mov_EI));
  for (uint8_t r = 0; r < 8; ++r) {
    t.set(key1(0xb0 + r), ANYKVM_SIZED(h_mov_ZI));
    t.set(key1(0xb8 + r), ANYKVM_SIZED(h_mov_ZI));
  }
  ANYKVM_SPECIALIZE_RM_SIZED(h_mov_EG);
  ANYKVM_SPECIALIZE_RM_SIZED(h_mov_GE);
  ANYKVM_SPECIALIZE_RM_SIZED(h_mov_EI);
  t.set(key1(0xa0), ANYKVM_SIZED(h_mov_A_O));
  t.set(key1(0xa1), ANYKVM_SIZED(h_mov_A_O));
  t.set(key1(0xa2), ANYKVM_SIZED(h_mov_O_A));
  t.set(key1(0xa3), ANYKVM_SIZED(h_mov_O_A));
  t.set(key1(0x8c), ANYKVM_V(h_mov_E_S));
  t.set(key1(0x8e), h_mov_S_E);
  t.set(key1(0x8d), ANYKVM_V(h_lea));
  ANYKVM_SPECIALIZE_RM(h_lea<uint16_t);
  ANYKVM_SPECIALIZE_RM(h_lea<uint32_t);
  t.set(key2(0xb6), SizedHandler{nullptr, h_movx<uint8_t, false, uint16_t>, h_movx<uint8_t, false, uint32_t>, nullptr});
  t.set(key2(0xb7), SizedHandler{nullptr, h_movx<uint16_t, false, uint16_t>, h_movx<uint16_t, false, uint32_t>, nullptr});
  t.set(key2(0xbe), SizedHandler{nullptr, h_movx<uint8_t, true, uint16_t>, h_movx<uint8_t, true, uint32_t>, nullptr});
  t.set(key2(0xbf), SizedHandler{nullptr, h_movx<uint16_t, true, uint16_t>, h_movx<uint16_t, true, uint32_t>, nullptr});
  ANYKVM_SPECIALIZE_RM(h_movx<uint8_t, false, uint16_t);
  ANYKVM_SPECIALIZE_RM(h_movx<uint8_t, false, uint32_t);
  ANYKVM_SPECIALIZE_RM(h_movx<uint16_t, false, uint16_t);
  ANYKVM_SPECIALIZE_RM(h_movx<uint16_t, false, uint32_t);
  ANYKVM_SPECIALIZE_RM(h_movx<uint8_t, true, uint16_t);
  ANYKVM_SPECIALIZE_RM(h_movx<uint8_t, true, uint32_t);
  ANYKVM_SPECIALIZE_RM(h_movx<uint16_t, true, uint16_t);
  ANYKVM_SPECIALIZE_RM(h_movx<uint16_t, true, uint32_t);
  t.set(key1(0x86), ANYKVM_SIZED(h_xchg_EG));
  t.set(key1(0x87), ANYKVM_SIZED(h_xchg_EG));
  for (uint8_t r = 1; r < 8; ++r) t.set(key1(0x90 + r), ANYKVM_V(h_xchg_Z));
  t.set(key2(0xc0), ANYKVM_SIZED(h_xadd));
  t.set(key2(0xc1), ANYKVM_SIZED(h_xadd));
  t.set(key2(0xb0), ANYKVM_SIZED(h_cmpxchg));
  t.set(key2(0xb1), ANYKVM_SIZED(h_cmpxchg));
  t.set(key2(0xc7, 1), h_cmpxchg8b);
  for (uint8_t cc = 0; cc < 16; ++cc) {
    t.set(key2(0x40 + cc), ANYKVM_V(h_cmov));
    t.set(key2(0x90 + cc), h_setcc);
  }
  t.set(key1(0x98), ANYKVM_V(h_cbw));
  t.set(key1(0x99), ANYKVM_V(h_cwd));
  t.set(key1(0x9f), h_lahf);
  t.set(key1(0x9e), h_sahf);
  t.set(key1(0xf8), h_clc);
  t.set(key1(0xf9), h_stc);
  t.set(key1(0xf5), h_cmc);
  t.set(key1(0xfc), h_cld);
  t.set(key1(0xfd), h_std);
}

}  // namespace anykvm::soft::ex
