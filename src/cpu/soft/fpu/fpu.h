// x87, MMX and SSE..SSE3 (owned by the FPU area). Registration entry point and
// the conversions to the FXSAVE image used by the KVM FPU ioctls.
#pragma once
#include <cstdint>
#include "x86/decode/insn.h"
#include "cpu/soft/fpu/fpu_state.h"

namespace anykvm::soft {
void register_fpu_handlers(x86::DispatchTable& t);
void fpu_to_fxsave(const FpuUnit& f, uint8_t out[512]);
void fpu_from_fxsave(FpuUnit& f, const uint8_t in[512]);
void fpu_reset(FpuUnit& f);  // FNINIT + MXCSR reset state (power-on/INIT)
}  // namespace anykvm::soft
