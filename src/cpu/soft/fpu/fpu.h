// x87, MMX and SSE..SSE3 (owned by the FPU area). Registration entry point,
// the conversions to the FXSAVE image used by the KVM FPU ioctls and the XSAVE
// state-component rules (xsave.cpp) the KVM XSAVE/XCRS ioctls share.
#pragma once
#include <cstdint>
#include "x86/decode/insn.h"
#include "cpu/soft/fpu/fpu_state.h"

namespace anykvm::soft {
void register_fpu_handlers(x86::DispatchTable& t);
// A waiting x87/MMX instruction with FSW.ES set (or FERR# still asserted):
// #MF when CR0.NE = 1; with CR0.NE = 0 FERR# goes to the in-kernel chipset
// (IRQ 13; the instruction waits, or runs under IGNNE#), or #MF as Linux KVM
// when there is none. Returns when the instruction may run.
void fpu_pending_error(Cpu& c);
void fpu_to_fxsave(const FpuUnit& f, uint8_t out[512]);
void fpu_from_fxsave(FpuUnit& f, const uint8_t in[512]);
void fpu_reset(FpuUnit& f);  // FNINIT + MXCSR reset state (power-on/INIT)
// The FXSAVE-image fields up to XMM(n_xmm-1), MXCSR included (FXRSTOR's load).
void fpu_from_fxsave_partial(FpuUnit& f, const uint8_t in[512], unsigned n_xmm);

// XSAVE state components (SDM vol. 1, 13.1): the engine supports x87 and SSE.
namespace xstate {
constexpr uint64_t X87 = 1u << 0, SSE = 1u << 1, SUPPORTED = X87 | SSE;
constexpr uint32_t k_area_size = 576;  // legacy region + header (CPUID 0xD.0 EBX/ECX)
}  // namespace xstate
uint64_t fpu_xinuse(const FpuUnit& f);  // XINUSE & SUPPORTED (XSAVE's XSTATE_BV)
// Puts the components in `mask` in their initial configuration (13.6); SSE:
// XMM0..n_xmm-1 = 0, MXCSR untouched (the standard-form XRSTOR loads it).
void fpu_init_components(FpuUnit& f, uint64_t mask, unsigned n_xmm);
// KVM_SET_XSAVE's effect (the image is already validated): components in
// xstate_bv from `legacy`, the others initialised (MXCSR with SSE).
void fpu_set_xsave(FpuUnit& f, const uint8_t legacy[512], uint64_t xstate_bv);
// XSETBV / KVM_SET_XCRS value check against the guest's CPUID (KVM's rules).
bool fpu_xcr0_valid(const Cpu& c, uint64_t xcr0);
}  // namespace anykvm::soft
