// Placeholder; the FPU area fills it.
#include "cpu/soft/fpu/fpu.h"
#include <cstring>

namespace anykvm::soft {
void register_fpu_handlers(x86::DispatchTable&) {}
void fpu_to_fxsave(const FpuUnit&, uint8_t out[512]) { std::memset(out, 0, 512); }
void fpu_from_fxsave(FpuUnit&, const uint8_t*) {}
void fpu_reset(FpuUnit& f) { f = FpuUnit{}; }
}  // namespace anykvm::soft
