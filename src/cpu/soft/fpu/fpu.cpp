// FPU area entry point: the x87 (x87.cpp), FXSAVE/FXRSTOR and MXCSR
// (fxsave.cpp, which also holds the KVM FXSAVE-image conversions), XSAVE/
// XRSTOR/XGETBV/XSETBV (xsave.cpp) and the
// MMX/SSE handlers (simd*.cpp) register here.
#include "cpu/soft/fpu/fpu.h"

#include "cpu/soft/fpu/simd.h"
#include "cpu/soft/fpu/x87.h"

namespace anykvm::soft {
void register_fpu_handlers(x86::DispatchTable& t) {
  x87::register_x87(t);
  x87::register_fxsr(t);
  x87::register_xsave(t);
  register_simd_handlers(t);
}
}  // namespace anykvm::soft
