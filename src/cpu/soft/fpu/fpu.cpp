// FPU area entry point: the x87 (x87.cpp), FXSAVE/FXRSTOR and MXCSR
// (fxsave.cpp, which also holds the KVM FXSAVE-image conversions), XSAVE/
// XRSTOR/XGETBV/XSETBV (xsave.cpp) and the
// MMX/SSE handlers (simd*.cpp) register here.
#include "cpu/soft/fpu/fpu.h"

#include "cpu/backend.h"
#include "cpu/soft/cpu.h"
#include "cpu/soft/fpu/simd.h"
#include "cpu/soft/fpu/x87.h"

namespace anykvm::soft {
void register_fpu_handlers(x86::DispatchTable& t) {
  x87::register_x87(t);
  x87::register_fxsr(t);
  x87::register_xsave(t);
  register_simd_handlers(t);
}

void fpu_pending_error(Cpu& c) {
  constexpr uint16_t k_es = 1u << 7;
  using Action = cpu::LocalDevices::FerrAction;
  if (!(c.fpu.fsw & k_es)) {  // the handler cleared the exception: FERR# deasserts
    c.ferr = false;
    if (c.local) c.local->fpu_error_clear();
    return;
  }
  if (c.cr0 & cr0::NE) throw fault(Vec::MF);
  switch (c.local ? c.local->fpu_error() : Action::Mf) {
    case Action::Mf: throw fault(Vec::MF);
    case Action::Ignore: c.ferr = true; return;
    case Action::Wait:
      // Frozen at this instruction (SDM vol. 1, D.2.1): like HLT without
      // retiring anything; IRQ 13 (or any interrupt) wakes the vCPU.
      c.ferr = true;
      c.halted = true;
      c.exit = cpu::VcpuExit{};
      c.exit.reason = cpu::ExitReason::Hlt;
      c.exit_pending = true;
      throw WaitInsn{};
  }
}
}  // namespace anykvm::soft
