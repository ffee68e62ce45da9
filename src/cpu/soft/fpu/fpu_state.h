// x87/MMX/SSE register file of the software engine. Owned by the FPU area
// (cpu/soft/fpu); the rest of the engine only stores it and converts it to and
// from the FXSAVE image (cpu::FpuState) for the KVM FPU ioctls.
#pragma once
#include <array>
#include <cstdint>

namespace anykvm::soft {

struct Float80 {
  uint64_t mantissa = 0;
  uint16_t sign_exp = 0;
};

struct FpuUnit {
  std::array<Float80, 8> st{};  // physical registers R0..R7 (ST(i) = R[(top+i)&7])
  uint16_t fcw = 0x037f;
  uint16_t fsw = 0;             // TOP kept in bits 11-13
  uint16_t ftw = 0xffff;        // full tag word: 2 bits per register, 11 = empty
  uint16_t fop = 0;
  uint64_t fip = 0, fdp = 0;
  uint16_t fcs = 0, fds = 0;
  alignas(16) std::array<std::array<uint64_t, 2>, 16> xmm{};
  uint32_t mxcsr = 0x1f80;
  // XSAVE components (xstate::X87/SSE) last loaded from memory by XRSTOR or
  // KVM_SET_XSAVE: they stay "in use" (XINUSE) even in their initial values.
  uint8_t xstate_loaded = 0;
};

}  // namespace anykvm::soft
