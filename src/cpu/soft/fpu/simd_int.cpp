// Packed integer instructions of MMX (no prefix, 64-bit MMX registers) and
// SSE2 (66 prefix, XMM registers): add/sub with wrap and saturation,
// multiplies, PMADDWD, PSADBW, PAVG, PMIN/PMAX, compares, logic, shifts by
// register and by immediate (groups 0F 71/72/73 incl. PSRLDQ/PSLLDQ),
// pack/unpack, PSHUF*, EMMS (SDM vol. 2, each mnemonic; vol. 1 ch. 9/11).
// One operation body serves both widths: `n` is the operand size in bytes.
// Shifts use the whole low 64 bits of the count operand (counts above the
// element width give zero, or the sign for PSRA). MMX PUNPCKL* read m32.
#include "cpu/soft/fpu/simd_common.h"

#include <algorithm>
#include <limits>

namespace anykvm::soft::simd {
namespace {

using Bytes = std::array<uint8_t, 16>;

inline Bytes to_bytes(const V& v) {
  Bytes b;
  std::memcpy(b.data(), v.data(), 16);
  return b;
}
inline V from_bytes(const Bytes& b) {
  V v;
  std::memcpy(v.data(), b.data(), 16);
  return v;
}
template <typename T>
inline T lane(const Bytes& b, unsigned k) {
  T v;
  std::memcpy(&v, b.data() + k * sizeof(T), sizeof(T));
  return v;
}
template <typename T>
inline void set_lane(Bytes& b, unsigned k, T v) {
  std::memcpy(b.data() + k * sizeof(T), &v, sizeof(T));
}

template <typename T, typename F>
inline V map2(const V& d, const V& s, unsigned n, F f) {
  Bytes a = to_bytes(d), b = to_bytes(s), r{};
  for (unsigned k = 0; k < n / sizeof(T); ++k) set_lane<T>(r, k, T(f(lane<T>(a, k), lane<T>(b, k))));
  return from_bytes(r);
}

template <typename T>
inline T sat(int64_t v) {
  return T(std::clamp<int64_t>(v, std::numeric_limits<T>::min(), std::numeric_limits<T>::max()));
}

// ---- the operations: V op(const V& dst, const V& src, unsigned n) ----
using IntOp = V (*)(const V&, const V&, unsigned);

template <typename T> V op_add(const V& d, const V& s, unsigned n) { return map2<T>(d, s, n, [](T a, T b) { return T(a + b); }); }
template <typename T> V op_sub(const V& d, const V& s, unsigned n) { return map2<T>(d, s, n, [](T a, T b) { return T(a - b); }); }
template <typename T> V op_adds(const V& d, const V& s, unsigned n) {
  return map2<T>(d, s, n, [](T a, T b) { return sat<T>(int64_t(a) + int64_t(b)); });
}
template <typename T> V op_subs(const V& d, const V& s, unsigned n) {
  return map2<T>(d, s, n, [](T a, T b) { return sat<T>(int64_t(a) - int64_t(b)); });
}
template <typename T> V op_cmpeq(const V& d, const V& s, unsigned n) {
  return map2<T>(d, s, n, [](T a, T b) { return a == b ? T(~T(0)) : T(0); });
}
template <typename T> V op_cmpgt(const V& d, const V& s, unsigned n) {
  return map2<T>(d, s, n, [](T a, T b) { return a > b ? T(-1) : T(0); });
}
template <typename T> V op_min(const V& d, const V& s, unsigned n) { return map2<T>(d, s, n, [](T a, T b) { return std::min(a, b); }); }
template <typename T> V op_max(const V& d, const V& s, unsigned n) { return map2<T>(d, s, n, [](T a, T b) { return std::max(a, b); }); }
template <typename T> V op_avg(const V& d, const V& s, unsigned n) {
  return map2<T>(d, s, n, [](T a, T b) { return T((uint32_t(a) + uint32_t(b) + 1) >> 1); });
}
V op_mullw(const V& d, const V& s, unsigned n) {
  return map2<int16_t>(d, s, n, [](int16_t a, int16_t b) { return int16_t(int32_t(a) * b); });
}
V op_mulhw(const V& d, const V& s, unsigned n) {
  return map2<int16_t>(d, s, n, [](int16_t a, int16_t b) { return int16_t((int32_t(a) * b) >> 16); });
}
V op_mulhuw(const V& d, const V& s, unsigned n) {
  return map2<uint16_t>(d, s, n, [](uint16_t a, uint16_t b) { return uint16_t((uint32_t(a) * b) >> 16); });
}
V op_muludq(const V& d, const V& s, unsigned n) {
  return map2<uint64_t>(d, s, n, [](uint64_t a, uint64_t b) { return uint64_t(uint32_t(a)) * uint32_t(b); });
}
V op_maddwd(const V& d, const V& s, unsigned n) {
  Bytes a = to_bytes(d), b = to_bytes(s), r{};
  for (unsigned k = 0; k < n / 4; ++k) {
    int32_t lo = int32_t(lane<int16_t>(a, 2 * k)) * lane<int16_t>(b, 2 * k);
    int32_t hi = int32_t(lane<int16_t>(a, 2 * k + 1)) * lane<int16_t>(b, 2 * k + 1);
    set_lane<uint32_t>(r, k, uint32_t(lo) + uint32_t(hi));  // 2 * (-32768)^2 wraps to 80000000h
  }
  return from_bytes(r);
}
V op_sadbw(const V& d, const V& s, unsigned n) {
  Bytes a = to_bytes(d), b = to_bytes(s);
  V r{0, 0};
  for (unsigned q = 0; q < n / 8; ++q) {
    uint32_t sum = 0;
    for (unsigned k = 0; k < 8; ++k) sum += uint32_t(std::abs(int(a[q * 8 + k]) - int(b[q * 8 + k])));
    r[q] = sum;
  }
  return r;
}
V op_and(const V& d, const V& s, unsigned) { return V{d[0] & s[0], d[1] & s[1]}; }
V op_andn(const V& d, const V& s, unsigned) { return V{~d[0] & s[0], ~d[1] & s[1]}; }
V op_or(const V& d, const V& s, unsigned) { return V{d[0] | s[0], d[1] | s[1]}; }
V op_xor(const V& d, const V& s, unsigned) { return V{d[0] ^ s[0], d[1] ^ s[1]}; }

// Shifts: `count` is the full 64-bit count.
template <typename T>
V shl(const V& d, uint64_t count, unsigned n) {
  return map2<T>(d, d, n, [count](T a, T) { return count >= sizeof(T) * 8 ? T(0) : T(a << count); });
}
template <typename T>
V shr(const V& d, uint64_t count, unsigned n) {
  return map2<T>(d, d, n, [count](T a, T) { return count >= sizeof(T) * 8 ? T(0) : T(a >> count); });
}
template <typename T>  // T signed
V sar(const V& d, uint64_t count, unsigned n) {
  return map2<T>(d, d, n, [count](T a, T) { return T(a >> std::min<uint64_t>(count, sizeof(T) * 8 - 1)); });
}
template <V (*Sh)(const V&, uint64_t, unsigned)>
V op_shift(const V& d, const V& s, unsigned n) {
  return Sh(d, s[0], n);
}
V byte_shift_right(const V& d, unsigned count) {
  Bytes a = to_bytes(d), r{};
  for (unsigned k = 0; k + count < 16 && count < 16; ++k) r[k] = a[k + count];
  return from_bytes(r);
}
V byte_shift_left(const V& d, unsigned count) {
  Bytes a = to_bytes(d), r{};
  for (unsigned k = count; k < 16; ++k) r[k] = a[k - count];
  return from_bytes(r);
}

// Pack: saturate the dst elements into the low half, the src ones into the high half.
template <typename From, typename To>
V op_pack(const V& d, const V& s, unsigned n) {
  Bytes a = to_bytes(d), b = to_bytes(s), r{};
  unsigned m = n / sizeof(From);
  for (unsigned k = 0; k < m; ++k) {
    set_lane<To>(r, k, sat<To>(lane<From>(a, k)));
    set_lane<To>(r, m + k, sat<To>(lane<From>(b, k)));
  }
  return from_bytes(r);
}
// Unpack: interleave the elements of the low (or high) halves.
template <typename T, bool High>
V op_unpck(const V& d, const V& s, unsigned n) {
  Bytes a = to_bytes(d), b = to_bytes(s), r{};
  unsigned half = n / sizeof(T) / 2;
  for (unsigned k = 0; k < half; ++k) {
    set_lane<T>(r, 2 * k, lane<T>(a, (High ? half : 0) + k));
    set_lane<T>(r, 2 * k + 1, lane<T>(b, (High ? half : 0) + k));
  }
  return from_bytes(r);
}

// ---- handlers ----

// MMX form: Pq, Qq. `src_size` 4 for PUNPCKL* (m32).
template <IntOp F, unsigned SrcSize = 8>
void h_mmx(Cpu& c, const Insn& i) {
  check_mmx(c);
  uint64_t s = get_q(c, i, SrcSize);
  V r = F(V{mm(c, i.reg), 0}, V{s, 0}, 8);
  mmx_enter(c);
  set_mm(c, i.reg, r[0]);
  advance(c, i);
}
// SSE2 form: Vx, Wx (aligned m128).
template <IntOp F>
void h_xmm(Cpu& c, const Insn& i) {
  check_sse(c);
  V s = get_w(c, i, 16);
  xmm(c, i.reg) = F(xmm(c, i.reg), s, 16);
  advance(c, i);
}

template <IntOp F, unsigned SrcSize = 8>
void reg_mx(DispatchTable& t, uint8_t opc) {
  t.set(key(opc, NP), h_mmx<F, SrcSize>);
  t.set(key(opc, P66), h_xmm<F>);
}

// Groups 71/72/73: shift the r/m register by imm8.
template <V (*Sh)(const V&, uint64_t, unsigned)>
void h_mmx_shimm(Cpu& c, const Insn& i) {
  check_mmx(c);
  V r = Sh(V{mm(c, i.rm), 0}, uint8_t(i.imm), 8);
  mmx_enter(c);
  set_mm(c, i.rm, r[0]);
  advance(c, i);
}
template <V (*Sh)(const V&, uint64_t, unsigned)>
void h_xmm_shimm(Cpu& c, const Insn& i) {
  check_sse(c);
  xmm(c, i.rm) = Sh(xmm(c, i.rm), uint8_t(i.imm), 16);
  advance(c, i);
}
V sh_srldq(const V& d, uint64_t count, unsigned) { return byte_shift_right(d, unsigned(std::min<uint64_t>(count, 16))); }
V sh_slldq(const V& d, uint64_t count, unsigned) { return byte_shift_left(d, unsigned(std::min<uint64_t>(count, 16))); }

template <V (*Sh)(const V&, uint64_t, unsigned)>
void reg_shimm(DispatchTable& t, uint8_t opc, int8_t grp, bool mmx = true) {
  if (mmx) t.set(key(opc, NP, grp, 1), h_mmx_shimm<Sh>);
  t.set(key(opc, P66, grp, 1), h_xmm_shimm<Sh>);
}

// PSHUFW/PSHUFD/PSHUFHW/PSHUFLW.
void h_pshufw(Cpu& c, const Insn& i) {
  check_mmx(c);
  uint64_t s = get_q(c, i);
  uint64_t r = 0;
  for (unsigned k = 0; k < 4; ++k) r |= ((s >> (16 * ((i.imm >> (2 * k)) & 3))) & 0xffff) << (16 * k);
  mmx_enter(c);
  set_mm(c, i.reg, r);
  advance(c, i);
}
void h_pshufd(Cpu& c, const Insn& i) {
  check_sse(c);
  Bytes s = to_bytes(get_w(c, i, 16)), r{};
  for (unsigned k = 0; k < 4; ++k) set_lane<uint32_t>(r, k, lane<uint32_t>(s, (i.imm >> (2 * k)) & 3));
  xmm(c, i.reg) = from_bytes(r);
  advance(c, i);
}
template <bool High>
void h_pshufxw(Cpu& c, const Insn& i) {
  check_sse(c);
  V s = get_w(c, i, 16);
  uint64_t q = s[High], r = 0;
  for (unsigned k = 0; k < 4; ++k) r |= ((q >> (16 * ((i.imm >> (2 * k)) & 3))) & 0xffff) << (16 * k);
  s[High] = r;
  xmm(c, i.reg) = s;
  advance(c, i);
}

void h_emms(Cpu& c, const Insn& i) {
  check_mmx(c);
  c.fpu.ftw = 0xffff;
  advance(c, i);
}

}  // namespace

void register_simd_int(DispatchTable& t) {
  reg_mx<op_unpck<uint8_t, false>, 4>(t, 0x60);
  reg_mx<op_unpck<uint16_t, false>, 4>(t, 0x61);
  reg_mx<op_unpck<uint32_t, false>, 4>(t, 0x62);
  reg_mx<op_pack<int16_t, int8_t>>(t, 0x63);
  reg_mx<op_cmpgt<int8_t>>(t, 0x64);
  reg_mx<op_cmpgt<int16_t>>(t, 0x65);
  reg_mx<op_cmpgt<int32_t>>(t, 0x66);
  reg_mx<op_pack<int16_t, uint8_t>>(t, 0x67);
  reg_mx<op_unpck<uint8_t, true>>(t, 0x68);
  reg_mx<op_unpck<uint16_t, true>>(t, 0x69);
  reg_mx<op_unpck<uint32_t, true>>(t, 0x6a);
  reg_mx<op_pack<int32_t, int16_t>>(t, 0x6b);
  t.set(key(0x6c, P66), h_xmm<op_unpck<uint64_t, false>>);
  t.set(key(0x6d, P66), h_xmm<op_unpck<uint64_t, true>>);
  t.set(key(0x70, NP), h_pshufw);
  t.set(key(0x70, P66), h_pshufd);
  t.set(key(0x70, PF3), h_pshufxw<true>);
  t.set(key(0x70, PF2), h_pshufxw<false>);
  reg_shimm<shr<uint16_t>>(t, 0x71, 2);
  reg_shimm<sar<int16_t>>(t, 0x71, 4);
  reg_shimm<shl<uint16_t>>(t, 0x71, 6);
  reg_shimm<shr<uint32_t>>(t, 0x72, 2);
  reg_shimm<sar<int32_t>>(t, 0x72, 4);
  reg_shimm<shl<uint32_t>>(t, 0x72, 6);
  reg_shimm<shr<uint64_t>>(t, 0x73, 2);
  reg_shimm<sh_srldq>(t, 0x73, 3, false);
  reg_shimm<shl<uint64_t>>(t, 0x73, 6);
  reg_shimm<sh_slldq>(t, 0x73, 7, false);
  reg_mx<op_cmpeq<uint8_t>>(t, 0x74);
  reg_mx<op_cmpeq<uint16_t>>(t, 0x75);
  reg_mx<op_cmpeq<uint32_t>>(t, 0x76);
  t.set(key(0x77, NP), h_emms);
  reg_mx<op_shift<shr<uint16_t>>>(t, 0xd1);
  reg_mx<op_shift<shr<uint32_t>>>(t, 0xd2);
  reg_mx<op_shift<shr<uint64_t>>>(t, 0xd3);
  reg_mx<op_add<uint64_t>>(t, 0xd4);
  reg_mx<op_mullw>(t, 0xd5);
  reg_mx<op_subs<uint8_t>>(t, 0xd8);
  reg_mx<op_subs<uint16_t>>(t, 0xd9);
  reg_mx<op_min<uint8_t>>(t, 0xda);
  reg_mx<op_and>(t, 0xdb);
  reg_mx<op_adds<uint8_t>>(t, 0xdc);
  reg_mx<op_adds<uint16_t>>(t, 0xdd);
  reg_mx<op_max<uint8_t>>(t, 0xde);
  reg_mx<op_andn>(t, 0xdf);
  reg_mx<op_avg<uint8_t>>(t, 0xe0);
  reg_mx<op_shift<sar<int16_t>>>(t, 0xe1);
  reg_mx<op_shift<sar<int32_t>>>(t, 0xe2);
  reg_mx<op_avg<uint16_t>>(t, 0xe3);
  reg_mx<op_mulhuw>(t, 0xe4);
  reg_mx<op_mulhw>(t, 0xe5);
  reg_mx<op_subs<int8_t>>(t, 0xe8);
  reg_mx<op_subs<int16_t>>(t, 0xe9);
  reg_mx<op_min<int16_t>>(t, 0xea);
  reg_mx<op_or>(t, 0xeb);
  reg_mx<op_adds<int8_t>>(t, 0xec);
  reg_mx<op_adds<int16_t>>(t, 0xed);
  reg_mx<op_max<int16_t>>(t, 0xee);
  reg_mx<op_xor>(t, 0xef);
  reg_mx<op_shift<shl<uint16_t>>>(t, 0xf1);
  reg_mx<op_shift<shl<uint32_t>>>(t, 0xf2);
  reg_mx<op_shift<shl<uint64_t>>>(t, 0xf3);
  reg_mx<op_muludq>(t, 0xf4);
  reg_mx<op_maddwd>(t, 0xf5);
  reg_mx<op_sadbw>(t, 0xf6);
  reg_mx<op_sub<uint8_t>>(t, 0xf8);
  reg_mx<op_sub<uint16_t>>(t, 0xf9);
  reg_mx<op_sub<uint32_t>>(t, 0xfa);
  reg_mx<op_sub<uint64_t>>(t, 0xfb);
  reg_mx<op_add<uint8_t>>(t, 0xfc);
  reg_mx<op_add<uint16_t>>(t, 0xfd);
  reg_mx<op_add<uint32_t>>(t, 0xfe);
}

}  // namespace anykvm::soft::simd
