// Shifts and rotates (group 2: ROL ROR RCL RCR SHL SHR SAL SAR by 1, CL, imm8),
// SHLD/SHRD, BT/BTS/BTR/BTC, BSF/BSR, BSWAP (SDM vol. 2). Counts are masked to
// five bits; a masked count of 0 changes nothing (flags included). Results and
// flags are computed by the host (exec/host_flags.h), so flags the manual
// leaves undefined (OF for counts > 1, AF, BSF/BSR's others) match the host.
// Memory bit offsets of BT* with a register operand are signed and may reach
// outside the addressed operand (SDM BT, "bit base + offset").
#include "cpu/soft/exec/common.h"
#include "cpu/soft/exec/host_flags.h"

namespace anykvm::soft::ex {
namespace {

enum class Sh : uint8_t { Rol, Ror, Rcl, Rcr, Shl, Shr, Sal, Sar };

inline uint8_t shift_count(const Cpu& c, const Insn& i) {
  switch (i.opcode) {
    case 0xc0: case 0xc1: return uint8_t(i.imm);
    case 0xd0: case 0xd1: return 1;
    default: return uint8_t(c.gpr[k_rcx]);
  }
}

template <Sh OP, typename T>
inline uint64_t do_shift(T& v, uint8_t n, uint64_t fin) {
  if constexpr (OP == Sh::Rol) return host_rol<T>(v, n, fin);
  else if constexpr (OP == Sh::Ror) return host_ror<T>(v, n, fin);
  else if constexpr (OP == Sh::Rcl) return host_rcl<T>(v, n, fin);
  else if constexpr (OP == Sh::Rcr) return host_rcr<T>(v, n, fin);
  else if constexpr (OP == Sh::Shl || OP == Sh::Sal) return host_shl<T>(v, n, fin);
  else if constexpr (OP == Sh::Shr) return host_shr<T>(v, n, fin);
  else return host_sar<T>(v, n, fin);
}

// SHL/SHR/SAR with a nonzero count define CF, SF, ZF, PF (OF for a count of
// 1) from the operands alone; AF and OF for larger counts are the host's
// choice. Probed once: when the host's flags after these shifts do not depend
// on the flags before (true of the AMD EPYC and Intel parts we know), they run
// without loading the guest's flags into the host (POPF) or materializing them.
template <typename T>
bool shifts_ignore_flags_in() {
  constexpr uint64_t k_in[] = {0x2, 0x2 | 0x8d5, 0x2 | 0x10, 0x2 | 0x801};
  for (uint32_t k = 0; k < 64; ++k) {
    T v0 = T(k * 0x9e3779b9u + (k >> 3));
    for (uint8_t n = 1; n < 32; ++n) {
      uint64_t f[3][4];
      for (int j = 0; j < 4; ++j) {
        T a = v0, b = v0, d = v0;
        f[0][j] = host_shl<T>(a, n, k_in[j]);
        f[1][j] = host_shr<T>(b, n, k_in[j]);
        f[2][j] = host_sar<T>(d, n, k_in[j]);
      }
      T a = v0, b = v0, d = v0;
      uint64_t nf[3] = {host_shl_nf<T>(a, n), host_shr_nf<T>(b, n), host_sar_nf<T>(d, n)};
      for (int o = 0; o < 3; ++o)
        for (int j = 0; j < 4; ++j)
          if ((f[o][j] ^ nf[o]) & fl::ARITH) return false;
    }
  }
  return true;
}
const bool k_shift_nf = shifts_ignore_flags_in<uint8_t>() && shifts_ignore_flags_in<uint16_t>() &&
                        shifts_ignore_flags_in<uint32_t>();

// Shift `v` by a nonzero masked count; returns the host flags.
template <Sh OP, typename T>
inline uint64_t shift_nonzero(Cpu& c, T& v, uint8_t n) {
  if constexpr (OP == Sh::Shl || OP == Sh::Sal || OP == Sh::Shr || OP == Sh::Sar) {
    if (k_shift_nf) [[likely]] {
      if constexpr (OP == Sh::Shr) return host_shr_nf<T>(v, n);
      else if constexpr (OP == Sh::Sar) return host_sar_nf<T>(v, n);
      else return host_shl_nf<T>(v, n);
    }
  }
  return do_shift<OP, T>(v, n, lazy_arith_flags(c.lf));
}

template <Sh OP, typename T, Rm M = Rm::Dyn>
void h_shift(Cpu& c, const Insn& i) {
  uint8_t n = shift_count(c, i) & 0x1f;
  if (rm_is_mem<M>(i)) {
    uint64_t a = ea_rm<M>(c, i);
    T v = c.read<T>(i.seg, a);
    if (n) {
      uint64_t f = shift_nonzero<OP, T>(c, v, n);
      c.write<T>(i.seg, a, v);
      set_flags_materialized(c, uint32_t(f));
    }
  } else if (n) {
    T v = c.reg<T>(i.rm);
    uint64_t f = shift_nonzero<OP, T>(c, v, n);
    c.set_reg<T>(i.rm, v);
    set_flags_materialized(c, uint32_t(f));
  }
  advance(c, i);
}

// SHLD/SHRD: 0F A4/AC take imm8, 0F A5/AD take CL.
template <bool RIGHT, typename T>
void h_dshift(Cpu& c, const Insn& i) {
  uint8_t n = uint8_t((i.opcode == 0xa4 || i.opcode == 0xac) ? i.imm : c.gpr[k_rcx]) & 0x1f;
  T s = get_reg<T>(c, i);
  uint64_t a = i.mem ? ea(c, i) : 0;
  T d = i.mem ? c.read<T>(i.seg, a) : c.reg<T>(i.rm);
  if (n) {
    uint64_t fin = lazy_arith_flags(c.lf);
    uint64_t f = RIGHT ? host_shrd<T>(d, s, n, fin) : host_shld<T>(d, s, n, fin);
    if (i.mem) c.write<T>(i.seg, a, d);
    else c.set_reg<T>(i.rm, d);
    set_flags_materialized(c, uint32_t(f));
  }
  advance(c, i);
}

enum class Bt : uint8_t { Bt, Bts, Btr, Btc };

template <Bt OP, typename T>
inline uint64_t do_bt(T& v, T bit, uint64_t fin) {
  if constexpr (OP == Bt::Bt) return host_bt<T>(v, bit, fin);
  else if constexpr (OP == Bt::Bts) return host_bts<T>(v, bit, fin);
  else if constexpr (OP == Bt::Btr) return host_btr<T>(v, bit, fin);
  else return host_btc<T>(v, bit, fin);
}

// Register bit offset (0F A3/AB/B3/BB) or imm8 (0F BA group 8).
template <Bt OP, typename T>
void h_bt(Cpu& c, const Insn& i) {
  constexpr unsigned bits = 8 * sizeof(T);
  const bool imm = i.opcode == 0xba;
  uint64_t fin = lazy_arith_flags(c.lf);
  if (!i.mem) {
    T v = c.reg<T>(i.rm);
    T bit = T((imm ? T(i.imm) : get_reg<T>(c, i)) & (bits - 1));
    uint64_t f = do_bt<OP, T>(v, bit, fin);
    if constexpr (OP != Bt::Bt) c.set_reg<T>(i.rm, v);
    set_flags_materialized(c, uint32_t(f));
    advance(c, i);
    return;
  }
  uint64_t a = ea(c, i);
  T bit;
  if (imm) {
    bit = T(i.imm & (bits - 1));
  } else {
    int64_t off = int64_t(Signed<T>(get_reg<T>(c, i)));
    a = bt_operand_address(i, a, off, sizeof(T));
    bit = T(off & (bits - 1));
  }
  T v = c.read<T>(i.seg, a);
  uint64_t f = do_bt<OP, T>(v, bit, fin);
  if constexpr (OP != Bt::Bt) c.write<T>(i.seg, a, v);
  set_flags_materialized(c, uint32_t(f));
  advance(c, i);
}

template <bool REVERSE, typename T>
void h_bsf(Cpu& c, const Insn& i) {
  T s = get_rm<T>(c, i);
  T d = get_reg<T>(c, i);
  uint64_t fin = lazy_arith_flags(c.lf);
  uint64_t f = REVERSE ? host_bsr<T>(d, s, fin) : host_bsf<T>(d, s, fin);
  put_reg<T>(c, i, d);
  set_flags_materialized(c, uint32_t(f));
  advance(c, i);
}

// BSWAP r32; with a 16-bit operand the result is undefined and hardware clears the word.
template <typename T>
void h_bswap(Cpu& c, const Insn& i) {
  if constexpr (sizeof(T) == 4) c.set_reg<uint32_t>(i.reg, __builtin_bswap32(c.reg<uint32_t>(i.reg)));
  else c.set_reg<uint16_t>(i.reg, 0);
  advance(c, i);
}

template <Sh OP>
void reg_shift(DispatchTable& t) {
  for (uint8_t op : {0xc0, 0xc1, 0xd0, 0xd1, 0xd2, 0xd3}) t.set(key1(op, int8_t(OP)), ANYKVM_SIZED1(h_shift, OP));
  ANYKVM_SPECIALIZE_RM_SIZED1(h_shift, OP);
}
#define ANYKVM_SIZED_V1(fn, a) \
  SizedHandler { nullptr, fn<a, uint16_t>, fn<a, uint32_t>, nullptr }

}  // namespace

void register_bits(DispatchTable& t) {
  reg_shift<Sh::Rol>(t);
  reg_shift<Sh::Ror>(t);
  reg_shift<Sh::Rcl>(t);
  reg_shift<Sh::Rcr>(t);
  reg_shift<Sh::Shl>(t);
  reg_shift<Sh::Shr>(t);
  reg_shift<Sh::Sal>(t);
  reg_shift<Sh::Sar>(t);
  t.set(key2(0xa4), ANYKVM_SIZED_V1(h_dshift, false));
  t.set(key2(0xa5), ANYKVM_SIZED_V1(h_dshift, false));
  t.set(key2(0xac), ANYKVM_SIZED_V1(h_dshift, true));
  t.set(key2(0xad), ANYKVM_SIZED_V1(h_dshift, true));
  t.set(key2(0xa3), ANYKVM_SIZED_V1(h_bt, Bt::Bt));
  t.set(key2(0xab), ANYKVM_SIZED_V1(h_bt, Bt::Bts));
  t.set(key2(0xb3), ANYKVM_SIZED_V1(h_bt, Bt::Btr));
  t.set(key2(0xbb), ANYKVM_SIZED_V1(h_bt, Bt::Btc));
  t.set(key2(0xba, 4), ANYKVM_SIZED_V1(h_bt, Bt::Bt));
  t.set(key2(0xba, 5), ANYKVM_SIZED_V1(h_bt, Bt::Bts));
  t.set(key2(0xba, 6), ANYKVM_SIZED_V1(h_bt, Bt::Btr));
  t.set(key2(0xba, 7), ANYKVM_SIZED_V1(h_bt, Bt::Btc));
  t.set(key2(0xbc), ANYKVM_SIZED_V1(h_bsf, false));
  t.set(key2(0xbd), ANYKVM_SIZED_V1(h_bsf, true));
  for (uint8_t r = 0; r < 8; ++r) t.set(key2(0xc8 + r), SizedHandler{nullptr, h_bswap<uint16_t>, h_bswap<uint32_t>, nullptr});
}

}  // namespace anykvm::soft::ex

namespace anykvm::soft {
bool host_shifts_ignore_flags_in() { return ex::k_shift_nf; }
}  // namespace anykvm::soft
