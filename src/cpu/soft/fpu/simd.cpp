// MMX/SSE/SSE2/SSE3 registration: the integer (simd_int.cpp), data-movement
// (simd_move.cpp) and floating-point (simd_float.cpp) handlers.
#include "cpu/soft/fpu/simd.h"

#include "cpu/soft/fpu/simd_common.h"

namespace anykvm::soft {
void register_simd_handlers(x86::DispatchTable& t) {
  simd::register_simd_int(t);
  simd::register_simd_move(t);
  simd::register_simd_float(t);
}
}  // namespace anykvm::soft
