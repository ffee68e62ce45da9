// The engine's side of an in-kernel irqchip (cpu/backend.h LocalDevices):
// taking its interrupt at a block boundary, and KVM_RUN with HLT handled
// inside it (Linux's kvm_vcpu_halt: a halted vCPU blocks until an interrupt
// it would take, a kick or a signal; KVM_EXIT_HLT only without an irqchip).
// The INIT/SIPI states follow Linux 6.1's x86.c and lapic.c: KVM_RUN of an
// UNINITIALIZED vCPU only waits, accepts INIT/SIPI and returns EAGAIN; one in
// INIT_RECEIVED waits inside KVM_RUN for its SIPI; KVM_GET_MP_STATE accepts
// latched events first (engine_accept_events).
// The PIO, MMIO and MSR hooks sit where those accesses are decided
// (exec/io.cpp, mmu/access.cpp mmu_mmio, cpuid_msr.cpp). vCPU thread only.
#include "cpu/soft/cpu.h"
#include "cpu/soft/events/debug.h"
#include "cpu/soft/mmu/mmu.h"
#include "cpu/soft/soft_vcpu.h"

namespace anykvm::soft {

namespace {

// INIT: kvm_vcpu_reset(init_event = true) — the power-on state of SDM vol. 3
// table 9-1 except that CR0.CD/NW, the x87/SSE state, the MSRs other than
// EFER, and the APIC base survive (SDM 9.1.1 "INIT").
void init_reset(Cpu& c) {
  constexpr uint8_t k_type_data_rw_accessed = 3, k_type_code_rx_accessed = 0xb;
  uint32_t signature = 0x600;  // RDX: CPUID.1:EAX if the guest has the leaf
  for (const cpu::CpuidEntry& e : c.cpuid_table)
    if (e.function == 1) signature = e.eax;
  c.gpr = {};
  c.gpr[2] = signature;
  c.rip = 0xfff0;
  c.set_eflags(fl::FIXED1);
  for (int s = 0; s < 6; ++s) {
    Segment& sg = c.seg[s];
    sg = Segment{};
    sg.limit = 0xffff;
    sg.present = 1;
    sg.s = 1;
    sg.type = s == 1 ? k_type_code_rx_accessed : k_type_data_rw_accessed;
  }
  c.seg[1].selector = 0xf000;
  c.seg[1].base = 0xffff0000;
  c.ldtr = Segment{};
  c.ldtr.limit = 0xffff;
  c.ldtr.type = 2;
  c.ldtr.present = 1;
  c.tr = Segment{};
  c.tr.limit = 0xffff;
  c.tr.type = 0xb;
  c.tr.present = 1;
  c.gdtr = {};
  c.idtr = {};
  c.gdtr.limit = c.idtr.limit = 0xffff;
  c.cr0 = cr0::ET | (c.cr0 & (cr0::CD | cr0::NW));
  c.cr2 = c.cr3 = c.cr4 = c.cr8 = c.efer = 0;
  c.xcr0 = 1;
  c.cpl = 0;
  c.dr = {};
  c.dr6 = 0xffff0ff0;
  c.dr7 = 0x400;
  c.interrupt_shadow = 0;
  c.nmi_masked = c.nmi_pending = c.irq_queued = false;
  c.halted = false;
  debug_dr7_changed(c);
  mmu_state_loaded(c);
}

// Waiting for INIT/SIPI: KVM_SET_MP_STATE(SIPI_RECEIVED) is stored as
// SipiReceived, i.e. INIT_RECEIVED with a SIPI latched (Linux sets
// KVM_APIC_SIPI), until the events are next accepted.
bool parked(const Cpu& c) {
  return c.mp_state == cpu::MpState::Uninitialized || c.mp_state == cpu::MpState::InitReceived ||
         c.mp_state == cpu::MpState::SipiReceived;
}

// kvm_apic_accept_events: INIT puts an AP in INIT_RECEIVED (the BSP stays
// runnable), a SIPI starts only a vCPU in INIT_RECEIVED at VV00:0000
// (SDM vol. 3, 8.4.4.1) and is dropped otherwise, an NMI becomes pending.
// The vector of a latched SIPI is the LAPIC's last (apic->sipi_vector).
void take_apic_events(Cpu& c) {
  const bool latched_sipi = c.mp_state == cpu::MpState::SipiReceived;
  if (latched_sipi) c.mp_state = cpu::MpState::InitReceived;
  cpu::LocalDevices::ApicEvents e = c.local->take_apic_events();
  if (e.init) {
    init_reset(c);
    // An instruction an exit left unfinished is abandoned (only reachable when
    // user space parked the vCPU with KVM_SET_MP_STATE during the exit).
    c.priv->stopped = false;
    c.priv->pio.state = PendingIo::State::Idle;
    c.mmio_log.reset();
    c.mp_state = e.bsp ? cpu::MpState::Runnable : cpu::MpState::InitReceived;
  }
  if ((e.sipi || latched_sipi) && c.mp_state == cpu::MpState::InitReceived) {
    c.seg[1].selector = uint16_t(e.sipi_vector) << 8;
    c.seg[1].base = uint64_t(e.sipi_vector) << 12;
    c.rip = 0;
    c.mp_state = cpu::MpState::Runnable;
    ++c.priv->epoch;  // the AP's code was written by another vCPU
  }
  if (e.nmi) c.nmi_pending = true;  // held while waiting for a SIPI
}

// Events to accept now. An instruction an exit interrupted completes first (as
// KVM's complete_userspace_io); its events are then taken at a block boundary.
void accept_pending_events(Cpu& c) {
  const bool pending =
      c.local->apic_events.load(std::memory_order_acquire) || c.mp_state == cpu::MpState::SipiReceived;
  if (pending && (!c.priv->stopped || parked(c))) take_apic_events(c);
}

}  // namespace

void engine_accept_events(Cpu& c) { accept_pending_events(c); }

void engine_local_interrupt(Cpu& c) {
  if (c.local->apic_events.load(std::memory_order_acquire)) [[unlikely]] {
    take_apic_events(c);
    if (c.mp_state != cpu::MpState::Runnable) {  // INIT: stop here, KVM_RUN waits for the SIPI
      c.exit_pending = true;
      c.exit = cpu::VcpuExit{};
      c.exit.reason = cpu::ExitReason::Hlt;  // taken by engine_run_with_local_devices, never user space's
      return;
    }
  }
  if (c.nmi_pending) {
    if (!c.nmi_masked && c.interrupt_shadow != 1) c.deliver_nmi();
    if (c.nmi_pending) c.local->attention.store(true, std::memory_order_relaxed);  // retried until unmasked
    if (c.exit_pending) return;
  }
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
  if (c.mp_state == cpu::MpState::Uninitialized) {
    // kvm_arch_vcpu_ioctl_run's UNINITIALIZED branch: this KVM_RUN never runs
    // the vCPU. EINTR at once for immediate_exit; otherwise block until an
    // event would make it runnable (kvm_vcpu_block: INIT/SIPI, an NMI, an
    // interrupt it would take), accept INIT/SIPI, and return EAGAIN, or EINTR
    // when a signal (a kick) ended the wait.
    if (ctl.immediate_exit && *ctl.immediate_exit) return interrupted();
    bool woke = c.nmi_pending || c.local->apic_events.load(std::memory_order_acquire) ||
                c.local->wait_halted(ctl, c.eflags_rest & fl::IF);
    accept_pending_events(c);
    if (!woke || ctl.stop_requested()) return interrupted();
    cpu::VcpuExit e;
    e.reason = cpu::ExitReason::Again;
    return e;
  }
  for (;;) {
    accept_pending_events(c);
    if (parked(c)) {
      // Waiting for INIT/SIPI: interrupts do not wake it (kvm_vcpu_block).
      if (!c.local->wait_halted(ctl, false)) return interrupted();
      continue;
    }
    if (c.mp_state == cpu::MpState::Halted) {
      // An NMI or a KVM_INTERRUPT vector (split mode) also ends the halt.
      bool event = c.nmi_pending || (c.irq_queued && (c.eflags_rest & fl::IF));
      if (!event && !c.local->wait_halted(ctl, c.eflags_rest & fl::IF)) return interrupted();
      c.mp_state = cpu::MpState::Runnable;
      c.halted = false;
      continue;  // an INIT may have woken it
    }
    cpu::VcpuExit e = run_engine(self, ctl);
    if (e.reason != cpu::ExitReason::Hlt) return e;
    if (c.mp_state == cpu::MpState::Runnable)
      c.mp_state = cpu::MpState::Halted;  // KVM_GET_MP_STATE reports it while we sleep or after EINTR
  }
}

}  // namespace anykvm::soft
