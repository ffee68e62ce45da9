// Two-operand integer arithmetic and logic (SDM vol. 2: ADD, OR, ADC, SBB, AND,
// SUB, XOR, CMP, TEST, INC, DEC, NOT, NEG) in all encodings: r/m,reg reg,r/m
// acc,imm r/m,imm (80-83 group 1) and the FE/FF/F6/F7 groups. Flags are lazy
// (flags_inl.h). LOCK is accepted (the decoder already rejected illegal
// uses); a single vCPU thread executes guest code per CPU, so plain RMW is
// atomic with respect to this vCPU; cross-vCPU atomicity is not modelled.
#include "cpu/soft/exec/common.h"

namespace anykvm::soft::ex {
namespace {

enum class Alu : uint8_t { Add, Or, Adc, Sbb, And, Sub, Xor, Cmp };

template <Alu OP, typename T>
inline T alu(Cpu& c, T d, T s) {
  T r;
  if constexpr (OP == Alu::Add) {
    r = T(d + s);
    set_lazy<T>(c, FlagOp::Add, d, s, r);
  } else if constexpr (OP == Alu::Adc) {
    bool cin = lazy_cf(c.lf);
    r = T(d + s + cin);
    set_lazy<T>(c, FlagOp::Adc, d, s, r, cin);
  } else if constexpr (OP == Alu::Sub || OP == Alu::Cmp) {
    r = T(d - s);
    set_lazy<T>(c, FlagOp::Sub, d, s, r);
  } else if constexpr (OP == Alu::Sbb) {
    bool cin = lazy_cf(c.lf);
    r = T(d - s - cin);
    set_lazy<T>(c, FlagOp::Sbb, d, s, r, cin);
  } else if constexpr (OP == Alu::And) {
    r = T(d & s);
    set_lazy<T>(c, FlagOp::Logic, d, s, r);
  } else if constexpr (OP == Alu::Or) {
    r = T(d | s);
    set_lazy<T>(c, FlagOp::Logic, d, s, r);
  } else {
    r = T(d ^ s);
    set_lazy<T>(c, FlagOp::Logic, d, s, r);
  }
  return r;
}

// r/m op= value, with the memory read-modify-write done before any commit.
template <Alu OP, typename T, Rm M>
inline void alu_rm(Cpu& c, const Insn& i, T s) {
  if (rm_is_mem<M>(i)) {
    uint64_t a = ea_rm<M>(c, i);
    T d = c.read<T>(i.seg, a);
    LazyFlags saved = c.lf;
    T r = alu<OP, T>(c, d, s);
    if constexpr (OP != Alu::Cmp) {
      try {
        c.write<T>(i.seg, a, r);
      } catch (...) {
        c.lf = saved;  // flags are register state: restore on an abandoned write
        throw;
      }
    }
  } else {
    T r = alu<OP, T>(c, c.reg<T>(i.rm), s);
    if constexpr (OP != Alu::Cmp) c.set_reg<T>(i.rm, r);
  }
}

template <Alu OP, typename T, Rm M = Rm::Dyn>
void h_EG(Cpu& c, const Insn& i) {
  alu_rm<OP, T, M>(c, i, get_reg<T>(c, i));
  advance(c, i);
}
template <Alu OP, typename T, Rm M = Rm::Dyn>
void h_GE(Cpu& c, const Insn& i) {
  T s = get_rm<T, M>(c, i);
  T r = alu<OP, T>(c, get_reg<T>(c, i), s);
  if constexpr (OP != Alu::Cmp) put_reg<T>(c, i, r);
  advance(c, i);
}
template <Alu OP, typename T>
void h_AI(Cpu& c, const Insn& i) {
  T r = alu<OP, T>(c, c.reg<T>(k_rax), T(i.imm));
  if constexpr (OP != Alu::Cmp) c.set_reg<T>(k_rax, r);
  advance(c, i);
}
template <Alu OP, typename T, Rm M = Rm::Dyn>
void h_EI(Cpu& c, const Insn& i) {
  alu_rm<OP, T, M>(c, i, T(i.imm));
  advance(c, i);
}

// TEST: AND without a result.
template <typename T, Rm M = Rm::Dyn>
void h_test_EG(Cpu& c, const Insn& i) {
  T d = get_rm<T, M>(c, i);
  T s = get_reg<T>(c, i);
  set_lazy<T>(c, FlagOp::Logic, d, s, T(d & s));
  advance(c, i);
}
template <typename T, Rm M = Rm::Dyn>
void h_test_EI(Cpu& c, const Insn& i) {
  T d = get_rm<T, M>(c, i);
  set_lazy<T>(c, FlagOp::Logic, d, T(i.imm), T(d & T(i.imm)));
  advance(c, i);
}
template <typename T>
void h_test_AI(Cpu& c, const Insn& i) {
  T d = c.reg<T>(k_rax);
  set_lazy<T>(c, FlagOp::Logic, d, T(i.imm), T(d & T(i.imm)));
  advance(c, i);
}

// INC/DEC keep CF (SDM INC: "The CF flag is not affected").
template <bool DEC, typename T>
inline T incdec(Cpu& c, T d) {
  bool cf = lazy_cf(c.lf);
  T r = DEC ? T(d - 1) : T(d + 1);
  set_lazy<T>(c, DEC ? FlagOp::Dec : FlagOp::Inc, d, T(1), r, cf);
  return r;
}
template <bool DEC, typename T, Rm M = Rm::Dyn>
void h_incdec_rm(Cpu& c, const Insn& i) {
  if (rm_is_mem<M>(i)) {
    uint64_t a = ea_rm<M>(c, i);
    T d = c.read<T>(i.seg, a);
    LazyFlags saved = c.lf;
    T r = incdec<DEC, T>(c, d);
    try {
      c.write<T>(i.seg, a, r);
    } catch (...) {
      c.lf = saved;
      throw;
    }
  } else {
    c.set_reg<T>(i.rm, incdec<DEC, T>(c, c.reg<T>(i.rm)));
  }
  advance(c, i);
}
template <bool DEC, typename T>
void h_incdec_reg(Cpu& c, const Insn& i) {
  c.set_reg<T>(i.reg, incdec<DEC, T>(c, c.reg<T>(i.reg)));
  advance(c, i);
}

template <typename T>
void h_not(Cpu& c, const Insn& i) {
  if (i.mem) {
    uint64_t a = ea(c, i);
    c.write<T>(i.seg, a, T(~c.read<T>(i.seg, a)));
  } else {
    c.set_reg<T>(i.rm, T(~c.reg<T>(i.rm)));
  }
  advance(c, i);
}
template <typename T>
void h_neg(Cpu& c, const Insn& i) {
  T s = get_rm<T>(c, i);
  T r = T(T(0) - s);
  if (i.mem) c.write<T>(i.seg, ea(c, i), r);
  else c.set_reg<T>(i.rm, r);
  set_lazy<T>(c, FlagOp::Neg, T(0), s, r);
  advance(c, i);
}

template <Alu OP>
void reg_alu(DispatchTable& t, uint8_t base) {
  t.set(key1(base + 0), ANYKVM_SIZED1(h_EG, OP));
  t.set(key1(base + 1), ANYKVM_SIZED1(h_EG, OP));
  t.set(key1(base + 2), ANYKVM_SIZED1(h_GE, OP));
  t.set(key1(base + 3), ANYKVM_SIZED1(h_GE, OP));
  t.set(key1(base + 4), ANYKVM_SIZED1(h_AI, OP));
  t.set(key1(base + 5), ANYKVM_SIZED1(h_AI, OP));
  for (uint8_t g1 : {0x80, 0x81, 0x82, 0x83}) t.set(key1(g1, int8_t(base >> 3)), ANYKVM_SIZED1(h_EI, OP));
  ANYKVM_SPECIALIZE_RM_SIZED1(h_EG, OP);
  ANYKVM_SPECIALIZE_RM_SIZED1(h_GE, OP);
  ANYKVM_SPECIALIZE_RM_SIZED1(h_EI, OP);
}

}  // namespace

void register_alu(DispatchTable& t) {
  reg_alu<Alu::Add>(t, 0x00);
  reg_alu<Alu::Or>(t, 0x08);
  reg_alu<Alu::Adc>(t, 0x10);
  reg_alu<Alu::Sbb>(t, 0x18);
  reg_alu<Alu::And>(t, 0x20);
  reg_alu<Alu::Sub>(t, 0x28);
  reg_alu<Alu::Xor>(t, 0x30);
  reg_alu<Alu::Cmp>(t, 0x38);
  t.set(key1(0x84), ANYKVM_SIZED(h_test_EG));
  t.set(key1(0x85), ANYKVM_SIZED(h_test_EG));
  t.set(key1(0xa8), ANYKVM_SIZED(h_test_AI));
  t.set(key1(0xa9), ANYKVM_SIZED(h_test_AI));
  ANYKVM_SPECIALIZE_RM_SIZED(h_test_EG);
  ANYKVM_SPECIALIZE_RM_SIZED(h_test_EI);
  for (uint8_t op : {0xf6, 0xf7}) {
    t.set(key1(op, 0), ANYKVM_SIZED(h_test_EI));
    t.set(key1(op, 1), ANYKVM_SIZED(h_test_EI));
    t.set(key1(op, 2), ANYKVM_SIZED(h_not));
    t.set(key1(op, 3), ANYKVM_SIZED(h_neg));
  }
  for (uint8_t op : {0xfe, 0xff}) {
    t.set(key1(op, 0), ANYKVM_SIZED1(h_incdec_rm, false));
    t.set(key1(op, 1), ANYKVM_SIZED1(h_incdec_rm, true));
  }
  ANYKVM_SPECIALIZE_RM_SIZED1(h_incdec_rm, false);
  ANYKVM_SPECIALIZE_RM_SIZED1(h_incdec_rm, true);
  for (uint8_t r = 0; r < 8; ++r) {
    t.set(key1(0x40 + r), ANYKVM_SIZED1(h_incdec_reg, false));
    t.set(key1(0x48 + r), ANYKVM_SIZED1(h_incdec_reg, true));
  }
}

}  // namespace anykvm::soft::ex
