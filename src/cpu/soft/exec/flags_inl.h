// Lazy arithmetic flags (cpu.h LazyFlags): a flag-setting instruction records
// its operation, operand size, sources and result; CF/PF/AF/ZF/SF/OF are
// computed only when read (SDM vol. 1, 3.4.3.1 and appendix A flag table).
// Instructions with irregular or undefined flags (MUL, DIV, shifts, BT*, BCD)
// store materialized OSZAPC with FlagOp::None instead.
// Included at the end of cpu.h; vCPU thread only.
#pragma once
#include <cstdint>

namespace anykvm::soft {

inline uint64_t size_mask(unsigned size) { return size >= 8 ? ~0ull : (1ull << (8 * size)) - 1; }
inline uint64_t size_sign(unsigned size) { return 1ull << (8 * size - 1); }

inline bool parity_even(uint8_t v) { return !__builtin_parity(v); }

// Record a lazy flag operation. For Adc/Sbb `carry_in` is the CF consumed; for
// Inc/Dec it is the CF kept (INC/DEC leave CF unchanged). dst, src and res are
// stored zero-extended from T (this is their only writer), so the single-flag
// readers below compare them without masking to the operand size.
template <typename T>
inline void set_lazy(Cpu& c, FlagOp op, T dst, T src, T res, bool carry_in = false) {
  c.lf.op = op;
  c.lf.size = sizeof(T);
  c.lf.dst = dst;
  c.lf.src = src;
  c.lf.res = res;
  // Only these read `flags` (lazy_arith_flags, lazy_cf): skip the store for the rest.
  if (op == FlagOp::Adc || op == FlagOp::Sbb || op == FlagOp::Inc || op == FlagOp::Dec)
    c.lf.flags = carry_in ? fl::CF : 0;
}

// Materialized OSZAPC (the rest of EFLAGS is untouched).
inline void set_flags_materialized(Cpu& c, uint32_t oszapc) {
  c.lf.op = FlagOp::None;
  c.lf.flags = oszapc & fl::ARITH;
}

// Compute all six flags from the lazy record.
inline uint32_t lazy_arith_flags(const LazyFlags& f) {
  if (f.op == FlagOp::None) return f.flags & fl::ARITH;
  const uint64_t m = size_mask(f.size), sign = size_sign(f.size);
  const uint64_t d = f.dst & m, s = f.src & m, r = f.res & m;
  const bool cin = f.flags & fl::CF;
  uint32_t out = 0;
  bool cf = false, of = false, af = false;
  switch (f.op) {
    case FlagOp::Add:
      cf = r < d;
      of = ((d ^ r) & (s ^ r) & sign) != 0;
      af = ((d ^ s ^ r) & 0x10) != 0;
      break;
    case FlagOp::Adc:
      cf = cin ? r <= d : r < d;
      of = ((d ^ r) & (s ^ r) & sign) != 0;
      af = ((d ^ s ^ r) & 0x10) != 0;
      break;
    case FlagOp::Sub:
      cf = d < s;
      of = ((d ^ s) & (d ^ r) & sign) != 0;
      af = ((d ^ s ^ r) & 0x10) != 0;
      break;
    case FlagOp::Sbb:
      cf = cin ? d <= s : d < s;
      of = ((d ^ s) & (d ^ r) & sign) != 0;
      af = ((d ^ s ^ r) & 0x10) != 0;
      break;
    case FlagOp::Logic:
      break;
    case FlagOp::Inc:
      cf = cin;
      of = r == sign;
      af = (r & 0xf) == 0;
      break;
    case FlagOp::Dec:
      cf = cin;
      of = r == sign - 1;
      af = (r & 0xf) == 0xf;
      break;
    case FlagOp::Neg:
      cf = s != 0;
      of = s == sign;
      af = ((s ^ r) & 0x10) != 0;
      break;
    case FlagOp::None:
      break;
  }
  if (cf) out |= fl::CF;
  if (parity_even(uint8_t(r))) out |= fl::PF;
  if (af) out |= fl::AF;
  if (r == 0) out |= fl::ZF;
  if (r & sign) out |= fl::SF;
  if (of) out |= fl::OF;
  return out;
}

// Single-flag readers (cheaper than computing all six).
inline bool lazy_zf(const LazyFlags& f) {
  if (f.op == FlagOp::None) return f.flags & fl::ZF;
  return f.res == 0;
}
inline bool lazy_sf(const LazyFlags& f) {
  if (f.op == FlagOp::None) return f.flags & fl::SF;
  return f.res & size_sign(f.size);
}
inline bool lazy_pf(const LazyFlags& f) {
  if (f.op == FlagOp::None) return f.flags & fl::PF;
  return parity_even(uint8_t(f.res));
}
inline bool lazy_cf(const LazyFlags& f) {
  switch (f.op) {
    case FlagOp::None: return f.flags & fl::CF;
    case FlagOp::Logic: return false;
    case FlagOp::Sub: return f.dst < f.src;
    case FlagOp::Add: return f.res < f.dst;
    case FlagOp::Inc:
    case FlagOp::Dec: return f.flags & fl::CF;  // the CF kept
    default: return lazy_arith_flags(f) & fl::CF;
  }
}
inline bool lazy_of(const LazyFlags& f) {
  const uint64_t sign = size_sign(f.size);
  switch (f.op) {
    case FlagOp::None: return f.flags & fl::OF;
    case FlagOp::Logic: return false;
    case FlagOp::Add:
    case FlagOp::Adc: return ((f.dst ^ f.res) & (f.src ^ f.res) & sign) != 0;
    case FlagOp::Sub:
    case FlagOp::Sbb: return ((f.dst ^ f.src) & (f.dst ^ f.res) & sign) != 0;
    case FlagOp::Inc: return f.res == sign;
    case FlagOp::Dec: return f.res == sign - 1;
    default: return lazy_arith_flags(f) & fl::OF;
  }
}
// Materialize everything and replace CF (CLC/STC/CMC, shifts by 0 keep all).
inline void lazy_set_cf(Cpu& c, bool v) {
  uint32_t f = lazy_arith_flags(c.lf);
  set_flags_materialized(c, v ? (f | fl::CF) : (f & ~fl::CF));
}

// Cpu::eflags/set_eflags/get_* are defined out of line in exec/flags.cpp
// (system code calls them rarely; the hot paths use the lazy_* helpers).

// Condition codes tttn (SDM vol. 1, appendix B): 0 O, 1 NO, 2 B, 3 AE, 4 E,
// 5 NE, 6 BE, 7 A, 8 S, 9 NS, A P, B NP, C L, D GE, E LE, F G.
enum class Cond : uint8_t { O, NO, B, AE, E, NE, BE, A, S, NS, P, NP, L, GE, LE, G };

[[gnu::always_inline]] inline bool eval_cond(const Cpu& c, unsigned cc) {
  bool r;
  // Fast path: a compare/subtract just happened (the common Jcc case).
  if (c.lf.op == FlagOp::Sub) {
    const uint64_t sign = size_sign(c.lf.size);
    const uint64_t d = c.lf.dst, s = c.lf.src;
    auto sx = [&](uint64_t v) { return int64_t(v ^ sign) - int64_t(sign); };
    // Pairs of conditions (SDM vol. 1, appendix B): cc>>1 = 1 B/AE, 2 E/NE, 3 BE/A, 6 L/GE, 7 LE/G.
    switch (cc >> 1) {
      case 1: r = d < s; return (cc & 1) ? !r : r;
      case 2: r = d == s; return (cc & 1) ? !r : r;
      case 3: r = d <= s; return (cc & 1) ? !r : r;
      case 6: r = sx(d) < sx(s); return (cc & 1) ? !r : r;
      case 7: r = sx(d) <= sx(s); return (cc & 1) ? !r : r;
      default: break;
    }
  }
  const LazyFlags& f = c.lf;
  switch (cc >> 1) {
    case 0: r = lazy_of(f); break;
    case 1: r = lazy_cf(f); break;
    case 2: r = lazy_zf(f); break;
    case 3: r = lazy_cf(f) || lazy_zf(f); break;
    case 4: r = lazy_sf(f); break;
    case 5: r = lazy_pf(f); break;
    case 6: r = lazy_sf(f) != lazy_of(f); break;
    default: r = lazy_zf(f) || (lazy_sf(f) != lazy_of(f)); break;
  }
  return (cc & 1) ? !r : r;
}

}  // namespace anykvm::soft
