// SSE/SSE2/SSE3 floating point: arithmetic (ADD/SUB/MUL/DIV/MIN/MAX/SQRT,
// RCP/RSQRT, CMP with its 8 predicates), COMIS/UCOMIS, every CVT* form, and
// ADDSUB/HADD/HSUB. Exactness comes from the host: each operation runs the
// same host SSE instruction with the guest's MXCSR loaded (exceptions masked)
// inside one asm block that saves and restores the host MXCSR, so neither
// side sees the other's state (issue 4 deliver 4). The flags it reports
// decide the guest's exception (SDM vol. 1, 11.5.1-11.5.2): an unmasked one
// raises #XM (CR4.OSXMMEXCPT = 1) or #UD, leaves the destination unchanged
// and sets only the pre-computation flags (IE/DE/ZE) when one of those is
// unmasked. An unmasked underflow is detected by re-running with FTZ, which
// reports tininess even for exact results (masked UE needs inexactness); a
// trapping overflow/underflow gets its PE element by element (see below).
// Left out: nothing known; RCP/RSQRT approximations are the host vendor's.
#include <immintrin.h>

#include <cmath>

#include "cpu/soft/fpu/simd_common.h"

namespace anykvm::soft::simd {
namespace {

inline __m128i ld(const V& v) { return _mm_loadu_si128(reinterpret_cast<const __m128i*>(v.data())); }
inline void st(V& v, __m128i x) { _mm_storeu_si128(reinterpret_cast<__m128i*>(v.data()), x); }

#define SIMD_ASM_BEGIN "stmxcsr %[sv]\n\tldmxcsr %[m]\n\t"
#define SIMD_ASM_END "\n\tstmxcsr %[o]\n\tldmxcsr %[sv]"
// `saved` is an in/out operand so that it cannot share a stack slot with the
// MXCSR input, which is still needed after the host value is saved.
#define SIMD_ASM_MX [sv] "+m"(saved), [o] "=m"(out)

// a = a OP b with the MXCSR `m`; returns the flags raised.
using HostFn = uint32_t (*)(V& a, const V& b, uint32_t m);
#define HOST_OP2(name, mnem)                                                                  \
  uint32_t name(V& a, const V& b, uint32_t m) {                                               \
    __m128i x = ld(a), y = ld(b);                                                             \
    uint32_t saved = 0, out;                                                                      \
    asm volatile(SIMD_ASM_BEGIN mnem " %[y], %[x]" SIMD_ASM_END : [x] "+x"(x), SIMD_ASM_MX    \
                 : [y] "x"(y), [m] "m"(m));                                                   \
    st(a, x);                                                                                 \
    return out & mx::FLAGS;                                                                   \
  }

HOST_OP2(f_addps, "addps") HOST_OP2(f_addpd, "addpd") HOST_OP2(f_addss, "addss") HOST_OP2(f_addsd, "addsd")
HOST_OP2(f_subps, "subps") HOST_OP2(f_subpd, "subpd") HOST_OP2(f_subss, "subss") HOST_OP2(f_subsd, "subsd")
HOST_OP2(f_mulps, "mulps") HOST_OP2(f_mulpd, "mulpd") HOST_OP2(f_mulss, "mulss") HOST_OP2(f_mulsd, "mulsd")
HOST_OP2(f_divps, "divps") HOST_OP2(f_divpd, "divpd") HOST_OP2(f_divss, "divss") HOST_OP2(f_divsd, "divsd")
HOST_OP2(f_minps, "minps") HOST_OP2(f_minpd, "minpd") HOST_OP2(f_minss, "minss") HOST_OP2(f_minsd, "minsd")
HOST_OP2(f_maxps, "maxps") HOST_OP2(f_maxpd, "maxpd") HOST_OP2(f_maxss, "maxss") HOST_OP2(f_maxsd, "maxsd")
HOST_OP2(f_sqrtps, "sqrtps") HOST_OP2(f_sqrtpd, "sqrtpd") HOST_OP2(f_sqrtss, "sqrtss") HOST_OP2(f_sqrtsd, "sqrtsd")
HOST_OP2(f_rsqrtps, "rsqrtps") HOST_OP2(f_rsqrtss, "rsqrtss") HOST_OP2(f_rcpps, "rcpps") HOST_OP2(f_rcpss, "rcpss")
HOST_OP2(f_cvtps2pd, "cvtps2pd") HOST_OP2(f_cvtpd2ps, "cvtpd2ps") HOST_OP2(f_cvtss2sd, "cvtss2sd")
HOST_OP2(f_cvtsd2ss, "cvtsd2ss") HOST_OP2(f_cvtdq2ps, "cvtdq2ps") HOST_OP2(f_cvtps2dq, "cvtps2dq")
HOST_OP2(f_cvttps2dq, "cvttps2dq") HOST_OP2(f_cvttpd2dq, "cvttpd2dq") HOST_OP2(f_cvtdq2pd, "cvtdq2pd")
HOST_OP2(f_cvtpd2dq, "cvtpd2dq")
HOST_OP2(f_addsubps, "addsubps") HOST_OP2(f_addsubpd, "addsubpd") HOST_OP2(f_haddps, "haddps")
HOST_OP2(f_haddpd, "haddpd") HOST_OP2(f_hsubps, "hsubps") HOST_OP2(f_hsubpd, "hsubpd")

// CMPccPS/PD/SS/SD: one instantiation per predicate (imm8[2:0]).
template <int P> uint32_t f_cmpps(V& a, const V& b, uint32_t m) {
  __m128i x = ld(a), y = ld(b);
  uint32_t saved = 0, out;
  asm volatile(SIMD_ASM_BEGIN "cmpps %[p], %[y], %[x]" SIMD_ASM_END : [x] "+x"(x), SIMD_ASM_MX
               : [y] "x"(y), [m] "m"(m), [p] "i"(P));
  st(a, x);
  return out & mx::FLAGS;
}
template <int P> uint32_t f_cmppd(V& a, const V& b, uint32_t m) {
  __m128i x = ld(a), y = ld(b);
  uint32_t saved = 0, out;
  asm volatile(SIMD_ASM_BEGIN "cmppd %[p], %[y], %[x]" SIMD_ASM_END : [x] "+x"(x), SIMD_ASM_MX
               : [y] "x"(y), [m] "m"(m), [p] "i"(P));
  st(a, x);
  return out & mx::FLAGS;
}
template <int P> uint32_t f_cmpss(V& a, const V& b, uint32_t m) {
  __m128i x = ld(a), y = ld(b);
  uint32_t saved = 0, out;
  asm volatile(SIMD_ASM_BEGIN "cmpss %[p], %[y], %[x]" SIMD_ASM_END : [x] "+x"(x), SIMD_ASM_MX
               : [y] "x"(y), [m] "m"(m), [p] "i"(P));
  st(a, x);
  return out & mx::FLAGS;
}
template <int P> uint32_t f_cmpsd(V& a, const V& b, uint32_t m) {
  __m128i x = ld(a), y = ld(b);
  uint32_t saved = 0, out;
  asm volatile(SIMD_ASM_BEGIN "cmpsd %[p], %[y], %[x]" SIMD_ASM_END : [x] "+x"(x), SIMD_ASM_MX
               : [y] "x"(y), [m] "m"(m), [p] "i"(P));
  st(a, x);
  return out & mx::FLAGS;
}
#define CMP_TABLE(fn) {fn<0>, fn<1>, fn<2>, fn<3>, fn<4>, fn<5>, fn<6>, fn<7>}
constexpr HostFn k_cmpps[8] = CMP_TABLE(f_cmpps);
constexpr HostFn k_cmppd[8] = CMP_TABLE(f_cmppd);
constexpr HostFn k_cmpss[8] = CMP_TABLE(f_cmpss);
constexpr HostFn k_cmpsd[8] = CMP_TABLE(f_cmpsd);

// COMISS/UCOMISS/COMISD/UCOMISD: b.low vs a.low -> ZF, PF, CF (OF, SF, AF cleared).
#define HOST_COMI(name, mnem)                                                                          \
  uint32_t name(V& a, const V& b, uint32_t m) {                                                        \
    __m128i x = ld(a), y = ld(b);                                                                      \
    uint32_t saved = 0, out;                                                                               \
    uint8_t z, p, cf;                                                                                  \
    asm volatile(SIMD_ASM_BEGIN mnem " %[y], %[x]\n\tsetz %[z]\n\tsetp %[p]\n\tsetc %[c]" SIMD_ASM_END \
                 : [z] "=&q"(z), [p] "=&q"(p), [c] "=&q"(cf), SIMD_ASM_MX                                 \
                 : [x] "x"(x), [y] "x"(y), [m] "m"(m)                                                  \
                 : "cc");                                                                              \
    a[0] = (z ? fl::ZF : 0) | (p ? fl::PF : 0) | (cf ? fl::CF : 0);                                    \
    return out & mx::FLAGS;                                                                            \
  }
HOST_COMI(f_comiss, "comiss") HOST_COMI(f_ucomiss, "ucomiss") HOST_COMI(f_comisd, "comisd")
HOST_COMI(f_ucomisd, "ucomisd")

// CVTSI2SS/SD xmm, r/m32: b[0] holds the integer.
#define HOST_CVT_I2F(name, mnem)                                                                         \
  uint32_t name(V& a, const V& b, uint32_t m) {                                                          \
    __m128i x = ld(a);                                                                                   \
    uint32_t saved = 0, out, g = uint32_t(b[0]);                                                             \
    asm volatile(SIMD_ASM_BEGIN mnem " %[g], %[x]" SIMD_ASM_END : [x] "+x"(x), SIMD_ASM_MX             \
                 : [g] "r"(g), [m] "m"(m));                                                              \
    st(a, x);                                                                                            \
    return out & mx::FLAGS;                                                                              \
  }
HOST_CVT_I2F(f_cvtsi2ss, "cvtsi2ssl") HOST_CVT_I2F(f_cvtsi2sd, "cvtsi2sdl")

// CVT(T)SS2SI / CVT(T)SD2SI r32, xmm/m: the integer goes to a[0].
#define HOST_CVT_F2I(name, mnem)                                                                         \
  uint32_t name(V& a, const V& b, uint32_t m) {                                                          \
    __m128i y = ld(b);                                                                                   \
    uint32_t saved = 0, out, g;                                                                              \
    asm volatile(SIMD_ASM_BEGIN mnem " %[y], %k[g]" SIMD_ASM_END : [g] "=&r"(g), SIMD_ASM_MX             \
                 : [y] "x"(y), [m] "m"(m));                                                              \
    a[0] = g;                                                                                            \
    return out & mx::FLAGS;                                                                              \
  }
HOST_CVT_F2I(f_cvtss2si, "cvtss2si") HOST_CVT_F2I(f_cvttss2si, "cvttss2si") HOST_CVT_F2I(f_cvtsd2si, "cvtsd2si")
HOST_CVT_F2I(f_cvttsd2si, "cvttsd2si")

// ---- trapping overflow/underflow ----
// When an unmasked overflow or underflow traps, an element that overflows or
// underflows reports PE only if its result rounded with an unbounded exponent
// is inexact (observed on hardware: 2^-64 * tiny traps with UE alone), while
// the other elements report their masked flags. So the flags of such a trap
// are recomputed element by element with the scalar host instruction, and the
// unbounded-exponent inexactness comes from the host x87 at the element's
// precision (its 15-bit exponent cannot overflow for these operands). The
// x87 control word is restored; its status bits are caller-saved in the ABI.
enum class XOp : uint8_t { None, Add, Sub, Mul, Div, AddSub, HAdd, HSub, Cvt };

long double to_ld(uint64_t bits, bool dbl, bool daz) {
  if (dbl) {
    double d;
    std::memcpy(&d, &bits, 8);
    if (daz && std::fpclassify(d) == FP_SUBNORMAL) d = std::copysign(0.0, d);
    return d;
  }
  float f;
  uint32_t b32 = uint32_t(bits);
  std::memcpy(&f, &b32, 4);
  if (daz && std::fpclassify(f) == FP_SUBNORMAL) f = std::copysign(0.0f, f);
  return f;
}

#define X87_INEXACT(name, insn)                                                                          \
  bool name(long double x, long double y, uint16_t cw) {                                               \
    uint16_t saved = 0, sw;                                                                              \
    asm volatile("fnstcw %[sv]\n\tfldcw %[cw]\n\tfnclex\n\tfldt %[y]\n\tfldt %[x]\n\t" insn            \
                 "\n\tfnstsw %[sw]\n\tfstp %%st(0)\n\tfstp %%st(0)\n\tfnclex\n\tfldcw %[sv]"            \
                 : [sv] "+m"(saved), [sw] "=m"(sw)                                                       \
                 : [cw] "m"(cw), [x] "m"(x), [y] "m"(y));                                                \
    return sw & 0x20;                                                                                    \
  }
X87_INEXACT(x87_add, "fadd %%st(1), %%st")
X87_INEXACT(x87_sub, "fsub %%st(1), %%st")
X87_INEXACT(x87_mul, "fmul %%st(1), %%st")
X87_INEXACT(x87_div, "fdiv %%st(1), %%st")

// Flags of one element: op(x, y) (Cvt: x alone) under the masked MXCSR `m`.
uint32_t element_flags(XOp op, bool dbl, uint64_t x, uint64_t y, uint32_t m, uint32_t unmasked) {
  HostFn fn = nullptr;
  switch (op) {
    case XOp::Add: fn = dbl ? f_addsd : f_addss; break;
    case XOp::Sub: fn = dbl ? f_subsd : f_subss; break;
    case XOp::Mul: fn = dbl ? f_mulsd : f_mulss; break;
    case XOp::Div: fn = dbl ? f_divsd : f_divss; break;
    default: fn = f_cvtsd2ss; break;
  }
  V a{op == XOp::Cvt ? 0 : x, 0}, b{op == XOp::Cvt ? x : y, 0}, r = a;
  uint32_t e = fn(r, b, m);
  if ((unmasked & mx::UE) && !(e & mx::UE)) {
    r = a;
    e |= fn(r, b, m | mx::FTZ) & mx::UE;
  }
  if (e & unmasked & (mx::OE | mx::UE)) {
    e &= ~mx::PE;
    bool daz = m & mx::DAZ, d = dbl && op != XOp::Cvt;
    // x87 control word: all exceptions masked, precision of the element (a
    // conversion rounds to single), the MXCSR rounding control (same encoding).
    constexpr uint16_t k_cw_masks = 0x7f, k_pc_single = 0 << 8, k_pc_double = 2 << 8;
    uint16_t pc = dbl && op != XOp::Cvt ? k_pc_double : k_pc_single;
    uint16_t cw = uint16_t(k_cw_masks | pc | (((m & mx::RC) >> 13) << 10));
    long double lx = to_ld(x, op == XOp::Cvt ? true : d, daz), ly = op == XOp::Cvt ? 1.0L : to_ld(y, d, daz);
    bool inexact = false;
    switch (op) {
      case XOp::Add: inexact = x87_add(lx, ly, cw); break;
      case XOp::Sub: inexact = x87_sub(lx, ly, cw); break;
      case XOp::Div: inexact = x87_div(lx, ly, cw); break;
      default: inexact = x87_mul(lx, ly, cw); break;  // Mul, Cvt (x * 1)
    }
    if (inexact) e |= mx::PE;
  }
  return e;
}

inline uint64_t elem(const V& v, unsigned k, bool dbl) {
  return dbl ? v[k] : uint32_t(v[k / 2] >> (32 * (k & 1)));
}

// The flags of a trapping operation, element by element.
uint32_t trap_flags(XOp op, bool dbl, bool scalar, const V& a, const V& b, uint32_t m, uint32_t unmasked) {
  unsigned n = scalar ? 1 : dbl ? 2 : 4;
  uint32_t f = 0;
  for (unsigned j = 0; j < n; ++j) {
    XOp eop = op;
    uint64_t x = elem(a, j, dbl), y = elem(b, j, dbl);
    switch (op) {
      case XOp::AddSub: eop = (j & 1) ? XOp::Add : XOp::Sub; break;
      case XOp::HAdd:
      case XOp::HSub: {
        eop = op == XOp::HAdd ? XOp::Add : XOp::Sub;
        const V& src = j < n / 2 ? a : b;
        unsigned p = 2 * (j % (n / 2));
        x = elem(src, p, dbl);
        y = elem(src, p + 1, dbl);
        break;
      }
      case XOp::Cvt: x = elem(b, j, true); break;
      default: break;
    }
    f |= element_flags(eop, dbl, x, y, m, unmasked);
  }
  return f;
}

// Runs `fn` on (a, b) under the guest MXCSR; on success a holds the result and
// the flags are merged into MXCSR, else the SIMD exception is raised: only the
// pre-computation flags when one of those is unmasked (post-computation checks
// are skipped), else the post-computation flags as above.
struct Shape {
  XOp op = XOp::None;
  bool dbl = false, scalar = false;
};
void run_host(Cpu& c, HostFn fn, V& a, const V& b, Shape sh = {}) {
  uint32_t g = c.fpu.mxcsr & 0xffff;
  uint32_t m = (g & ~mx::FLAGS) | mx::MASKS;
  uint32_t unmasked = ~(g >> 7) & mx::FLAGS;
  V r = a;
  uint32_t f = fn(r, b, m);
  if ((unmasked & mx::UE) && !(f & mx::UE)) {
    V probe = a;
    if (fn(probe, b, m | mx::FTZ) & mx::UE) f |= mx::UE;
  }
  if (f & unmasked) {
    uint32_t pre = f & (mx::IE | mx::DE | mx::ZE);
    if (pre & unmasked) f = pre;
    else if ((f & unmasked & (mx::OE | mx::UE)) && sh.op != XOp::None)
      f = trap_flags(sh.op, sh.dbl, sh.scalar, a, b, m, unmasked);
    c.fpu.mxcsr |= f;
    throw fault((c.cr4 & cr4::OSXMMEXCPT) ? Vec::XM : Vec::UD);
  }
  c.fpu.mxcsr |= f;
  a = r;
}

// Vx <- Vx OP Wx, with the memory form reading `SrcSize` bytes.
template <HostFn F, unsigned SrcSize, XOp X = XOp::None, bool Dbl = false, bool Scalar = false>
void h_op(Cpu& c, const Insn& i) {
  check_sse(c);
  V b = get_w(c, i, SrcSize);
  V a = xmm(c, i.reg);
  run_host(c, F, a, b, Shape{X, Dbl, Scalar});
  xmm(c, i.reg) = a;
  advance(c, i);
}
template <const HostFn* Table, unsigned SrcSize>
void h_cmp(Cpu& c, const Insn& i) {
  check_sse(c);
  V b = get_w(c, i, SrcSize);
  V a = xmm(c, i.reg);
  run_host(c, Table[i.imm & 7], a, b);
  xmm(c, i.reg) = a;
  advance(c, i);
}
template <HostFn F, unsigned SrcSize>
void h_comi(Cpu& c, const Insn& i) {
  check_sse(c);
  V b = get_w(c, i, SrcSize);
  V a = xmm(c, i.reg);
  run_host(c, F, a, b);
  set_flags_materialized(c, uint32_t(a[0]));
  advance(c, i);
}
template <HostFn F>
void h_cvtsi2s(Cpu& c, const Insn& i) {
  check_sse(c);
  V b{ex::get_rm<uint32_t>(c, i), 0};
  V a = xmm(c, i.reg);
  run_host(c, F, a, b);
  xmm(c, i.reg) = a;
  advance(c, i);
}
template <HostFn F, unsigned SrcSize>
void h_cvts2si(Cpu& c, const Insn& i) {
  check_sse(c);
  V b = get_w(c, i, SrcSize);
  V a{0, 0};
  run_host(c, F, a, b);
  c.set_reg<uint32_t>(i.reg, uint32_t(a[0]));
  advance(c, i);
}

// MMX-register conversions through the XMM forms on a zero-padded operand
// (zero elements convert exactly and raise nothing).
// CVTPI2PS xmm, mm/m64: only the low two floats change.
void h_cvtpi2ps(Cpu& c, const Insn& i) {
  check_sse(c);
  if (!i.mem) check_x87_pending(c);
  V b{get_q(c, i), 0};
  V a = xmm(c, i.reg), r = a;
  run_host(c, f_cvtdq2ps, r, b);
  if (!i.mem) mmx_enter(c);
  xmm(c, i.reg) = V{r[0], a[1]};
  advance(c, i);
}
void h_cvtpi2pd(Cpu& c, const Insn& i) {
  check_sse(c);
  if (!i.mem) check_x87_pending(c);
  V b{get_q(c, i), 0};
  V a = xmm(c, i.reg);
  run_host(c, f_cvtdq2pd, a, b);
  if (!i.mem) mmx_enter(c);
  xmm(c, i.reg) = a;
  advance(c, i);
}
// CVT(T)PS2PI mm, xmm/m64 and CVT(T)PD2PI mm, xmm/m128.
template <HostFn F, bool Packed64>
void h_cvt2pi(Cpu& c, const Insn& i) {
  check_sse(c);
  check_x87_pending(c);
  V b = get_w(c, i, Packed64 ? 8 : 16);
  if (Packed64) b[1] = 0;
  V a{0, 0};
  run_host(c, F, a, b);
  mmx_enter(c);
  set_mm(c, i.reg, a[0]);
  advance(c, i);
}

void reg4(DispatchTable& t, uint8_t opc, x86::Handler ps, x86::Handler pd, x86::Handler ss, x86::Handler sd) {
  t.set(key(opc, NP), ps);
  t.set(key(opc, P66), pd);
  if (ss) t.set(key(opc, PF3), ss);
  if (sd) t.set(key(opc, PF2), sd);
}
#define REG4(opc, n, x)                                                                             \
  reg4(t, opc, h_op<f_##n##ps, 16, x>, h_op<f_##n##pd, 16, x, true>, h_op<f_##n##ss, 4, x, false, true>, \
       h_op<f_##n##sd, 8, x, true, true>)

}  // namespace

void register_simd_float(DispatchTable& t) {
  t.set(key(0x2a, NP), h_cvtpi2ps);
  t.set(key(0x2a, P66), h_cvtpi2pd);
  t.set(key(0x2a, PF3), h_cvtsi2s<f_cvtsi2ss>);
  t.set(key(0x2a, PF2), h_cvtsi2s<f_cvtsi2sd>);
  t.set(key(0x2c, NP), h_cvt2pi<f_cvttps2dq, true>);
  t.set(key(0x2c, P66), h_cvt2pi<f_cvttpd2dq, false>);
  t.set(key(0x2c, PF3), h_cvts2si<f_cvttss2si, 4>);
  t.set(key(0x2c, PF2), h_cvts2si<f_cvttsd2si, 8>);
  t.set(key(0x2d, NP), h_cvt2pi<f_cvtps2dq, true>);
  t.set(key(0x2d, P66), h_cvt2pi<f_cvtpd2dq, false>);
  t.set(key(0x2d, PF3), h_cvts2si<f_cvtss2si, 4>);
  t.set(key(0x2d, PF2), h_cvts2si<f_cvtsd2si, 8>);
  t.set(key(0x2e, NP), h_comi<f_ucomiss, 4>);
  t.set(key(0x2e, P66), h_comi<f_ucomisd, 8>);
  t.set(key(0x2f, NP), h_comi<f_comiss, 4>);
  t.set(key(0x2f, P66), h_comi<f_comisd, 8>);
  REG4(0x51, sqrt, XOp::None);
  t.set(key(0x52, NP), h_op<f_rsqrtps, 16>);
  t.set(key(0x52, PF3), h_op<f_rsqrtss, 4>);
  t.set(key(0x53, NP), h_op<f_rcpps, 16>);
  t.set(key(0x53, PF3), h_op<f_rcpss, 4>);
  REG4(0x58, add, XOp::Add);
  REG4(0x59, mul, XOp::Mul);
  reg4(t, 0x5a, h_op<f_cvtps2pd, 8>, h_op<f_cvtpd2ps, 16, XOp::Cvt, true>, h_op<f_cvtss2sd, 4>, h_op<f_cvtsd2ss, 8, XOp::Cvt, true, true>);
  reg4(t, 0x5b, h_op<f_cvtdq2ps, 16>, h_op<f_cvtps2dq, 16>, h_op<f_cvttps2dq, 16>, nullptr);
  REG4(0x5c, sub, XOp::Sub);
  REG4(0x5d, min, XOp::None);
  REG4(0x5e, div, XOp::Div);
  REG4(0x5f, max, XOp::None);
  t.set(key(0x7c, P66), h_op<f_haddpd, 16, XOp::HAdd, true>);
  t.set(key(0x7c, PF2), h_op<f_haddps, 16, XOp::HAdd>);
  t.set(key(0x7d, P66), h_op<f_hsubpd, 16, XOp::HSub, true>);
  t.set(key(0x7d, PF2), h_op<f_hsubps, 16, XOp::HSub>);
  reg4(t, 0xc2, h_cmp<k_cmpps, 16>, h_cmp<k_cmppd, 16>, h_cmp<k_cmpss, 4>, h_cmp<k_cmpsd, 8>);
  t.set(key(0xd0, P66), h_op<f_addsubpd, 16, XOp::AddSub, true>);
  t.set(key(0xd0, PF2), h_op<f_addsubps, 16, XOp::AddSub>);
  t.set(key(0xe6, P66), h_op<f_cvttpd2dq, 16>);
  t.set(key(0xe6, PF3), h_op<f_cvtdq2pd, 8>);
  t.set(key(0xe6, PF2), h_op<f_cvtpd2dq, 16>);
}

}  // namespace anykvm::soft::simd
