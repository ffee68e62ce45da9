// Host-executed x87 instructions (x87_host.h). The stubs form a table of
// 16-byte entries, one per (escape opcode, ModRM byte): register forms carry
// their ModRM unchanged, memory forms are re-encoded as [rsi] (mod 00, rm 110)
// with the same ModRM.reg. Only the encodings the dispatcher lets through are
// ever called (reserved aliases would #UD on some hosts).
#include "cpu/soft/fpu/x87_host.h"

#include <cstring>

#if !defined(__x86_64__)
#error "the x87 unit executes on the host x87: x86-64 hosts only"
#endif

// Each stub: endbr64; frstor (%rdi); <insn>; fnsave (%rdi); pushfq; pop %rax; ret.
asm(R"(
  .pushsection .text
  .p2align 4
  .globl anykvm_x87_stubs
  .hidden anykvm_x87_stubs
anykvm_x87_stubs:
  .irp op, 0xd8, 0xd9, 0xda, 0xdb, 0xdc, 0xdd, 0xde, 0xdf
  .set anykvm_m, 0
  .rept 256
  .p2align 4
  endbr64
  frstor (%rdi)
  .if (anykvm_m >> 6) == 3
  .byte \op, anykvm_m
  .else
  .byte \op, (((anykvm_m >> 3) & 7) << 3) | 6
  .endif
  fnsave (%rdi)
  pushfq
  popq %rax
  ret
  .set anykvm_m, anykvm_m + 1
  .endr
  .endr
  .p2align 4
  .globl anykvm_x87_fcmov_stubs
  .hidden anykvm_x87_fcmov_stubs
anykvm_x87_fcmov_stubs:
  .irp cc, 0, 1
  .set anykvm_m, 0
  .rept 8
  .p2align 4
  endbr64
  .if \cc
  stc
  .else
  clc
  .endif
  frstor (%rdi)
  .byte 0xda, 0xc0 + anykvm_m
  fnsave (%rdi)
  pushfq
  popq %rax
  ret
  .set anykvm_m, anykvm_m + 1
  .endr
  .endr
  .popsection
)");

extern "C" const uint8_t anykvm_x87_stubs[];
extern "C" const uint8_t anykvm_x87_fcmov_stubs[];

namespace anykvm::soft::x87 {
namespace {

using StubFn = uint64_t (*)(void* img, void* mem);

// Calls the stub so that the client's own x87 settings and flags survive the
// stub's final FNSAVE (which reinitializes the unit). The SysV ABI keeps the
// x87 stack empty across calls, so when the host FSW is clear (no sticky
// flags, TOP = 0) only the control word needs restoring; otherwise the whole
// host state is saved and restored (about 200 ns more).
uint64_t call_stub(const uint8_t* stub, uint8_t* img, void* mem) {
  uint16_t host_sw, host_cw;
  asm volatile("fnstsw %0" : "=m"(host_sw)::"memory");
  if (host_sw == 0) [[likely]] {
    asm volatile("fnstcw %0" : "=m"(host_cw)::"memory");
    auto fn = reinterpret_cast<StubFn>(reinterpret_cast<uintptr_t>(stub));
    uint64_t r = fn(img, mem);
    asm volatile("fldcw %0" ::"m"(host_cw) : "memory");
    return r;
  }
  alignas(16) uint8_t host[k_image_size];
  asm volatile("fnsave %0" : "=m"(host)::"memory");
  auto fn = reinterpret_cast<StubFn>(reinterpret_cast<uintptr_t>(stub));
  uint64_t r = fn(img, mem);
  asm volatile("frstor %0" ::"m"(host) : "memory");
  return r;
}

template <typename T>
T ld(const uint8_t* p) {
  T v;
  std::memcpy(&v, p, sizeof(T));
  return v;
}
template <typename T>
void st(uint8_t* p, T v) {
  std::memcpy(p, &v, sizeof(T));
}

// FNSAVE 32-bit protected-mode layout offsets.
constexpr unsigned k_fcw = 0, k_fsw = 4, k_ftw = 8, k_regs = 28;

}  // namespace

unsigned content_tag(const Float80& r) {
  const unsigned exp = r.sign_exp & 0x7fff;
  if (exp == 0x7fff) return 2;
  if (exp == 0) return r.mantissa == 0 ? 1 : 2;
  return (r.mantissa >> 63) ? 0 : 2;  // unnormal: integer bit clear
}

uint16_t canonical_tags(const FpuUnit& f, uint16_t ftw) {
  uint16_t out = 0;
  for (unsigned r = 0; r < 8; ++r) {
    unsigned t = ((ftw >> (2 * r)) & 3) == 3 ? 3 : content_tag(f.st[r]);
    out |= uint16_t(t << (2 * r));
  }
  return out;
}

uint16_t with_summary(uint16_t fsw, uint16_t fcw) {
  fsw &= uint16_t(~(sw::ES | sw::B));
  if (fsw & ~fcw & sw::EXC) fsw |= sw::ES | sw::B;
  return fsw;
}

void to_image(const FpuUnit& f, uint8_t img[k_image_size]) {
  std::memset(img, 0, k_image_size);
  st<uint16_t>(img + k_fcw, f.fcw);
  st<uint16_t>(img + k_fsw, uint16_t(f.fsw & ~(sw::STICKY | sw::ES | sw::B)));
  st<uint16_t>(img + k_ftw, canonical_tags(f, f.ftw));
  const unsigned t = top(f);
  for (unsigned i = 0; i < 8; ++i) {
    const Float80& r = f.st[(t + i) & 7];
    st<uint64_t>(img + k_regs + 10 * i, r.mantissa);
    st<uint16_t>(img + k_regs + 10 * i + 8, r.sign_exp);
  }
}

void from_image(FpuUnit& f, const uint8_t img[k_image_size]) {
  const uint16_t host_fsw = ld<uint16_t>(img + k_fsw);
  const uint16_t fsw = uint16_t((host_fsw & ~(sw::ES | sw::B)) | (f.fsw & sw::STICKY));
  f.fsw = with_summary(fsw, f.fcw);
  const unsigned t = (host_fsw >> sw::TOP_SHIFT) & 7;
  for (unsigned i = 0; i < 8; ++i) {
    Float80& r = f.st[(t + i) & 7];
    r.mantissa = ld<uint64_t>(img + k_regs + 10 * i);
    r.sign_exp = ld<uint16_t>(img + k_regs + 10 * i + 8);
  }
  f.ftw = canonical_tags(f, ld<uint16_t>(img + k_ftw));
}

uint64_t run(uint8_t opcode, uint8_t modrm, uint8_t img[k_image_size], void* mem) {
  const uint8_t* stub = anykvm_x87_stubs + ((unsigned(opcode & 7) << 8) | modrm) * 16;
  return call_stub(stub, img, mem);
}

uint64_t run_fcmov(bool cond, unsigned i, uint8_t img[k_image_size]) {
  const uint8_t* stub = anykvm_x87_fcmov_stubs + ((cond ? 8 : 0) + (i & 7)) * 16;
  return call_stub(stub, img, nullptr);
}

}  // namespace anykvm::soft::x87
