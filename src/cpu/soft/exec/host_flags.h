// Running an instruction on the host CPU to get its exact flags: for MUL/IMUL,
// DIV/IDIV, shifts/rotates, SHLD/SHRD, BT*, BSF/BSR the manual leaves some flags
// undefined, so we execute the same operation natively with the guest's OSZAPC
// loaded and keep what the host produced. Consequence: undefined flags match the
// host CPU (an AMD EPYC where this was written), like KVM on that host would.
// x86-64 hosts only. The stack adjustment keeps pushf/popf out of the red zone.
#pragma once
#include <cstdint>

#if !defined(__x86_64__)
#error "exec/host_flags.h needs an x86-64 host"
#endif

// `in` is the guest OSZAPC (other bits zero, so DF/TF stay clear on the host);
// `out` receives the host's RFLAGS after the instruction.
#define ANYKVM_HOST_BEGIN "lea -128(%%rsp), %%rsp\n\tpushq %q[fin]\n\tpopfq\n\t"
#define ANYKVM_HOST_END "\n\tpushfq\n\tpopq %q[fout]\n\tlea 128(%%rsp), %%rsp"

namespace anykvm::soft::ex {

// Size suffix helpers for the asm templates.
template <typename T> struct Sfx;
template <> struct Sfx<uint8_t> { static constexpr char c = 'b'; };
template <> struct Sfx<uint16_t> { static constexpr char c = 'w'; };
template <> struct Sfx<uint32_t> { static constexpr char c = 'l'; };

// dst = OP dst, count (shifts/rotates by CL). Returns host flags.
#define ANYKVM_DEFINE_SHIFT(name, insn)                                                                      \
  template <typename T>                                                                                      \
  inline uint64_t host_##name(T& v, uint8_t count, uint64_t fin) {                                           \
    uint64_t fout;                                                                                           \
    if constexpr (sizeof(T) == 1)                                                                            \
      asm(ANYKVM_HOST_BEGIN insn "b %%cl, %b[v]" ANYKVM_HOST_END : [v] "+q"(v), [fout] "=&r"(fout)           \
          : [fin] "r"(fin), "c"(count) : "cc");                                                              \
    else if constexpr (sizeof(T) == 2)                                                                       \
      asm(ANYKVM_HOST_BEGIN insn "w %%cl, %w[v]" ANYKVM_HOST_END : [v] "+r"(v), [fout] "=&r"(fout)           \
          : [fin] "r"(fin), "c"(count) : "cc");                                                              \
    else                                                                                                     \
      asm(ANYKVM_HOST_BEGIN insn "l %%cl, %k[v]" ANYKVM_HOST_END : [v] "+r"(v), [fout] "=&r"(fout)           \
          : [fin] "r"(fin), "c"(count) : "cc");                                                              \
    return fout;                                                                                             \
  }
// The same without loading the guest's flags first (no POPF, the slow part):
// for instructions whose host flags were found not to depend on the incoming
// flags (host_flags_probe below).
#define ANYKVM_HOST_NF_END "\n\tlea -128(%%rsp), %%rsp\n\tpushfq\n\tpopq %q[fout]\n\tlea 128(%%rsp), %%rsp"
#define ANYKVM_DEFINE_SHIFT_NF(name, insn)                                                                   \
  template <typename T>                                                                                      \
  inline uint64_t host_##name##_nf(T& v, uint8_t count) {                                                    \
    uint64_t fout;                                                                                           \
    if constexpr (sizeof(T) == 1)                                                                            \
      asm(insn "b %%cl, %b[v]" ANYKVM_HOST_NF_END : [v] "+q"(v), [fout] "=&r"(fout) : "c"(count) : "cc");   \
    else if constexpr (sizeof(T) == 2)                                                                       \
      asm(insn "w %%cl, %w[v]" ANYKVM_HOST_NF_END : [v] "+r"(v), [fout] "=&r"(fout) : "c"(count) : "cc");   \
    else                                                                                                     \
      asm(insn "l %%cl, %k[v]" ANYKVM_HOST_NF_END : [v] "+r"(v), [fout] "=&r"(fout) : "c"(count) : "cc");   \
    return fout;                                                                                             \
  }
ANYKVM_DEFINE_SHIFT_NF(shl, "shl")
ANYKVM_DEFINE_SHIFT_NF(shr, "shr")
ANYKVM_DEFINE_SHIFT_NF(sar, "sar")
#undef ANYKVM_DEFINE_SHIFT_NF

ANYKVM_DEFINE_SHIFT(rol, "rol")
ANYKVM_DEFINE_SHIFT(ror, "ror")
ANYKVM_DEFINE_SHIFT(rcl, "rcl")
ANYKVM_DEFINE_SHIFT(rcr, "rcr")
ANYKVM_DEFINE_SHIFT(shl, "shl")
ANYKVM_DEFINE_SHIFT(shr, "shr")
ANYKVM_DEFINE_SHIFT(sar, "sar")
#undef ANYKVM_DEFINE_SHIFT

// SHLD/SHRD dst, src, CL (16/32-bit).
#define ANYKVM_DEFINE_DSHIFT(name, insn)                                                                     \
  template <typename T>                                                                                      \
  inline uint64_t host_##name(T& d, T s, uint8_t count, uint64_t fin) {                                      \
    uint64_t fout;                                                                                           \
    if constexpr (sizeof(T) == 2)                                                                            \
      asm(ANYKVM_HOST_BEGIN insn "w %%cl, %w[s], %w[d]" ANYKVM_HOST_END : [d] "+r"(d), [fout] "=&r"(fout)    \
          : [s] "r"(s), [fin] "r"(fin), "c"(count) : "cc");                                                  \
    else                                                                                                     \
      asm(ANYKVM_HOST_BEGIN insn "l %%cl, %k[s], %k[d]" ANYKVM_HOST_END : [d] "+r"(d), [fout] "=&r"(fout)    \
          : [s] "r"(s), [fin] "r"(fin), "c"(count) : "cc");                                                  \
    return fout;                                                                                             \
  }
ANYKVM_DEFINE_DSHIFT(shld, "shld")
ANYKVM_DEFINE_DSHIFT(shrd, "shrd")
#undef ANYKVM_DEFINE_DSHIFT

// Two-operand register forms: d = d OP s (IMUL r,r/m; BSF; BSR; BT*).
#define ANYKVM_DEFINE_BIN(name, insn)                                                                        \
  template <typename T>                                                                                      \
  inline uint64_t host_##name(T& d, T s, uint64_t fin) {                                                     \
    uint64_t fout;                                                                                           \
    if constexpr (sizeof(T) == 2)                                                                            \
      asm(ANYKVM_HOST_BEGIN insn "w %w[s], %w[d]" ANYKVM_HOST_END : [d] "+r"(d), [fout] "=&r"(fout)          \
          : [s] "r"(s), [fin] "r"(fin) : "cc");                                                              \
    else                                                                                                     \
      asm(ANYKVM_HOST_BEGIN insn "l %k[s], %k[d]" ANYKVM_HOST_END : [d] "+r"(d), [fout] "=&r"(fout)          \
          : [s] "r"(s), [fin] "r"(fin) : "cc");                                                              \
    return fout;                                                                                             \
  }
ANYKVM_DEFINE_BIN(imul2, "imul")
ANYKVM_DEFINE_BIN(bsf, "bsf")
ANYKVM_DEFINE_BIN(bsr, "bsr")
ANYKVM_DEFINE_BIN(bt, "bt")
ANYKVM_DEFINE_BIN(bts, "bts")
ANYKVM_DEFINE_BIN(btr, "btr")
ANYKVM_DEFINE_BIN(btc, "btc")
#undef ANYKVM_DEFINE_BIN

// One-operand MUL/IMUL/DIV/IDIV on (hi:lo) accumulators. For the byte forms
// `lo` is AX and `hi` is unused. DIV/IDIV must be pre-checked for #DE.
#define ANYKVM_DEFINE_ACC(name, insn)                                                                        \
  template <typename T>                                                                                      \
  inline uint64_t host_##name(T& lo, T& hi, T s, uint64_t fin) {                                             \
    uint64_t fout;                                                                                           \
    if constexpr (sizeof(T) == 1) {                                                                          \
      uint16_t ax = uint16_t(lo | (uint16_t(hi) << 8));                                                      \
      asm(ANYKVM_HOST_BEGIN insn "b %b[s]" ANYKVM_HOST_END : "+a"(ax), [fout] "=&r"(fout)                    \
          : [s] "q"(s), [fin] "r"(fin) : "cc");                                                              \
      lo = T(ax);                                                                                            \
      hi = T(ax >> 8);                                                                                       \
    } else if constexpr (sizeof(T) == 2) {                                                                   \
      asm(ANYKVM_HOST_BEGIN insn "w %w[s]" ANYKVM_HOST_END : "+a"(lo), "+d"(hi), [fout] "=&r"(fout)          \
          : [s] "r"(s), [fin] "r"(fin) : "cc");                                                              \
    } else {                                                                                                 \
      asm(ANYKVM_HOST_BEGIN insn "l %k[s]" ANYKVM_HOST_END : "+a"(lo), "+d"(hi), [fout] "=&r"(fout)          \
          : [s] "r"(s), [fin] "r"(fin) : "cc");                                                              \
    }                                                                                                        \
    return fout;                                                                                             \
  }
ANYKVM_DEFINE_ACC(mul, "mul")
ANYKVM_DEFINE_ACC(imul1, "imul")
ANYKVM_DEFINE_ACC(div, "div")
ANYKVM_DEFINE_ACC(idiv, "idiv")
#undef ANYKVM_DEFINE_ACC

}  // namespace anykvm::soft::ex
