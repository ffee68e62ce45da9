// MUL, IMUL (one-, two- and three-operand forms), DIV, IDIV (SDM vol. 2).
// #DE for a zero divisor or a quotient that does not fit (checked before
// anything runs). Flags come from the host (exec/host_flags.h): CF/OF are
// defined, SF/ZF/AF/PF then match the host CPU.
#include "cpu/soft/exec/common.h"
#include "cpu/soft/exec/host_flags.h"

namespace anykvm::soft::ex {
namespace {

inline uint64_t guest_arith(const Cpu& c) { return lazy_arith_flags(c.lf); }

// Accumulator pair for the one-operand forms: AL/AH(AX) for bytes, (E)AX and (E)DX otherwise.
template <typename T>
inline void load_acc(const Cpu& c, T& lo, T& hi) {
  if constexpr (sizeof(T) == 1) {
    lo = T(c.gpr[k_rax]);
    hi = T(c.gpr[k_rax] >> 8);
  } else {
    lo = c.reg<T>(k_rax);
    hi = c.reg<T>(k_rdx);
  }
}
template <typename T>
inline void store_acc(Cpu& c, T lo, T hi) {
  if constexpr (sizeof(T) == 1) {
    c.set_reg<uint16_t>(k_rax, uint16_t(lo | (uint16_t(hi) << 8)));
  } else {
    c.set_reg<T>(k_rax, lo);
    c.set_reg<T>(k_rdx, hi);
  }
}

template <typename T>
void h_mul(Cpu& c, const Insn& i) {
  T s = get_rm<T>(c, i), lo, hi;
  load_acc(c, lo, hi);
  uint64_t f = host_mul<T>(lo, hi, s, guest_arith(c));
  store_acc(c, lo, hi);
  set_flags_materialized(c, uint32_t(f));
  advance(c, i);
}
template <typename T>
void h_imul1(Cpu& c, const Insn& i) {
  T s = get_rm<T>(c, i), lo, hi;
  load_acc(c, lo, hi);
  uint64_t f = host_imul1<T>(lo, hi, s, guest_arith(c));
  store_acc(c, lo, hi);
  set_flags_materialized(c, uint32_t(f));
  advance(c, i);
}

// Quotient range check (SDM DIV/IDIV: #DE if the quotient is too large).
template <typename T, bool SIGNED>
inline void check_div(T lo, T hi, T s) {
  if (s == 0) throw fault(Vec::DE);
  constexpr unsigned bits = 8 * sizeof(T);
  if constexpr (!SIGNED) {
    if (hi >= s) throw fault(Vec::DE);
  } else {
    using S = Signed<T>;
    __int128 dividend = (__int128(S(hi)) << bits) | __int128(uint64_t(lo));
    __int128 q = dividend / __int128(S(s));
    __int128 lim = __int128(1) << (bits - 1);
    if (q >= lim || q < -lim) throw fault(Vec::DE);
  }
}
template <typename T>
void h_div(Cpu& c, const Insn& i) {
  T s = get_rm<T>(c, i), lo, hi;
  load_acc(c, lo, hi);
  check_div<T, false>(lo, hi, s);
  uint64_t f = host_div<T>(lo, hi, s, guest_arith(c));
  store_acc(c, lo, hi);
  set_flags_materialized(c, uint32_t(f));
  advance(c, i);
}
template <typename T>
void h_idiv(Cpu& c, const Insn& i) {
  T s = get_rm<T>(c, i), lo, hi;
  load_acc(c, lo, hi);
  check_div<T, true>(lo, hi, s);
  uint64_t f = host_idiv<T>(lo, hi, s, guest_arith(c));
  store_acc(c, lo, hi);
  set_flags_materialized(c, uint32_t(f));
  advance(c, i);
}

// The truncated product and the flags IMUL leaves when the host passes SF,
// ZF, AF and PF through unchanged: CF = OF = "the product did not fit".
template <typename T>
inline uint32_t imul_passthrough(T& d, T s, uint32_t fin) {
  using S = Signed<T>;
  S r;
  const bool ovf = __builtin_mul_overflow(S(d), S(s), &r);
  d = T(r);
  return (fin & (fl::SF | fl::ZF | fl::AF | fl::PF)) | (ovf ? fl::CF | fl::OF : 0);
}

// Whether the host's two-operand IMUL leaves SF/ZF/AF/PF as they were (the
// manual leaves them undefined; the AMD EPYC this was written on keeps them).
// Probed once: then IMUL runs natively without loading the guest's flags into
// the host (POPF, the slow part), with the same result.
template <typename T>
bool imul_passes_flags_through() {
  constexpr uint64_t k_in[] = {0x2, 0x2 | 0x8d5, 0x2 | 0x44, 0x2 | 0x891};
  for (uint32_t k = 0; k < 256; ++k) {
    const T a = T(k * 0x9e3779b9u ^ (k << 29)), b = T((k >> 2) * 0x85ebca6bu + k);
    for (uint64_t fin : k_in) {
      T host = a, emul = a;
      const uint64_t f = host_imul2<T>(host, b, fin);
      const uint32_t e = imul_passthrough<T>(emul, b, uint32_t(fin));
      if (host != emul || ((f ^ e) & fl::ARITH)) return false;
    }
  }
  return true;
}
const bool k_imul_passthrough = imul_passes_flags_through<uint16_t>() && imul_passes_flags_through<uint32_t>();

template <typename T>
inline uint32_t imul2(Cpu& c, T& d, T s) {
  if (k_imul_passthrough) [[likely]]
    return imul_passthrough<T>(d, s, guest_arith(c));
  return uint32_t(host_imul2<T>(d, s, guest_arith(c)));
}

// IMUL r, r/m (0F AF) and IMUL r, r/m, imm (69, 6B).
template <typename T, Rm M = Rm::Dyn>
void h_imul2(Cpu& c, const Insn& i) {
  T d = get_reg<T>(c, i);
  T s = get_rm<T, M>(c, i);
  uint32_t f = imul2<T>(c, d, s);
  put_reg<T>(c, i, d);
  set_flags_materialized(c, f);
  advance(c, i);
}
template <typename T>
void h_imul3(Cpu& c, const Insn& i) {
  T d = get_rm<T>(c, i);
  uint32_t f = imul2<T>(c, d, T(i.imm));
  put_reg<T>(c, i, d);
  set_flags_materialized(c, f);
  advance(c, i);
}

}  // namespace

void register_muldiv(DispatchTable& t) {
  for (uint8_t op : {0xf6, 0xf7}) {
    t.set(key1(op, 4), ANYKVM_SIZED(h_mul));
    t.set(key1(op, 5), ANYKVM_SIZED(h_imul1));
    t.set(key1(op, 6), ANYKVM_SIZED(h_div));
    t.set(key1(op, 7), ANYKVM_SIZED(h_idiv));
  }
  SizedHandler i2{nullptr, h_imul2<uint16_t>, h_imul2<uint32_t>, nullptr};
  SizedHandler i3{nullptr, h_imul3<uint16_t>, h_imul3<uint32_t>, nullptr};
  t.set(key2(0xaf), i2);
  ANYKVM_SPECIALIZE_RM(h_imul2<uint16_t);
  ANYKVM_SPECIALIZE_RM(h_imul2<uint32_t);
  t.set(key1(0x69), i3);
  t.set(key1(0x6b), i3);
}

}  // namespace anykvm::soft::ex
