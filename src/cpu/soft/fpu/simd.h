// MMX, SSE, SSE2 and SSE3 in 32-bit mode (XMM0-7): the registration entry
// point. The FPU area's register_fpu_handlers calls it.
#pragma once
#include "x86/decode/insn.h"

namespace anykvm::soft {
void register_simd_handlers(x86::DispatchTable& t);
}  // namespace anykvm::soft
