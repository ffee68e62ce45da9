// The engine's side of an in-kernel irqchip (cpu/backend.h LocalDevices):
// taking its interrupt at a block boundary, and KVM_RUN with HLT handled
// inside it (Linux's kvm_vcpu_halt: a halted vCPU blocks until an interrupt
// it would take, a kick or a signal; KVM_EXIT_HLT only without an irqchip).
// The PIO, MMIO and MSR hooks sit where those accesses are decided
// (exec/io.cpp, mmu/access.cpp mmu_mmio, cpuid_msr.cpp). vCPU thread only.
#include "cpu/soft/cpu.h"
#include "cpu/soft/soft_vcpu.h"

namespace anykvm::soft {

void engine_local_interrupt(Cpu& c) {
  // Maskable interrupts need IF=1 and no STI/MOV SS shadow (SDM vol. 3, 6.8.3);
  // `attention` stays set until they can be taken.
  if (!(c.eflags_rest & fl::IF) || c.interrupt_shadow || c.irq_queued) return;
  if (c.local->take_external_event()) ++c.priv->epoch;  // blocks revalidate against RAM
  int vector = c.local->take_interrupt();
  if (vector >= 0) c.deliver_interrupt(uint8_t(vector), false, c.rip);
}

cpu::VcpuExit engine_run_with_local_devices(Cpu& c, cpu::RunControl& ctl,
                                            cpu::VcpuExit (*run_engine)(void*, cpu::RunControl&), void* self) {
  auto interrupted = [&] {
    if (ctl.kick) ctl.kick->store(false, std::memory_order_release);
    cpu::VcpuExit e;
    e.reason = cpu::ExitReason::Interrupted;
    return e;
  };
  for (;;) {
    if (c.mp_state == cpu::MpState::Halted) {
      // An NMI or a KVM_INTERRUPT vector (split mode) also ends the halt.
      bool event = c.nmi_pending || (c.irq_queued && (c.eflags_rest & fl::IF));
      if (!event && !c.local->wait_halted(ctl, c.eflags_rest & fl::IF)) return interrupted();
      c.mp_state = cpu::MpState::Runnable;
      c.halted = false;
    }
    cpu::VcpuExit e = run_engine(self, ctl);
    if (e.reason != cpu::ExitReason::Hlt) return e;
    c.mp_state = cpu::MpState::Halted;  // KVM_GET_MP_STATE reports it while we sleep or after EINTR
  }
}

}  // namespace anykvm::soft
