// The engine interface (DESIGN.md "Layers"): what machine/ needs from a CPU
// engine to serve KVM_RUN and the vCPU state ioctls. The software engine
// (cpu/soft) implements it; hardware backends (Hypervisor.framework, WHPX, KVM
// pass-through as a test oracle) must be able to plug in beside it, so keep it
// small: run, state get/set, inject interrupt/NMI, interrupt window.
// No <linux/kvm.h> here: exits and state use cpu/ types; kvmapi/ converts.
#pragma once
#include <atomic>
#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include "base/types.h"
#include "cpu/arch_state.h"
#include "cpu/memory.h"

namespace anykvm::cpu {

enum class ExitReason : uint8_t {
  Io,             // KVM_EXIT_IO: io.* filled, data in the PIO page
  Mmio,           // KVM_EXIT_MMIO: mmio.* filled
  Hlt,            // KVM_EXIT_HLT: RIP already past HLT
  IrqWindowOpen,  // KVM_EXIT_IRQ_WINDOW_OPEN
  Shutdown,       // KVM_EXIT_SHUTDOWN (triple fault)
  InternalError,  // KVM_EXIT_INTERNAL_ERROR
  Debug,          // KVM_EXIT_DEBUG (guest debugging requested by user space)
  Interrupted,    // a kick / immediate_exit: KVM_RUN returns -1 EINTR
  IoapicEoi,      // KVM_EXIT_IOAPIC_EOI (split irqchip): eoi_vector filled
  // KVM_RUN returns -1 EAGAIN, exit_reason untouched: an UNINITIALIZED vCPU
  // woke and accepted its INIT/SIPI (kvm_arch_vcpu_ioctl_run); it runs from
  // the next KVM_RUN.
  Again,
};

enum class InternalSuberror : uint32_t { Emulation = 1, SimulEx = 2, DeliveryEv = 3, UnexpectedExitReason = 4 };

struct VcpuExit {
  ExitReason reason = ExitReason::Interrupted;
  struct {
    bool out = false;  // KVM_EXIT_IO_OUT (1) vs IN (0)
    uint8_t size = 0;  // 1, 2 or 4
    uint16_t port = 0;
    uint32_t count = 0;  // elements in the PIO page; count*size <= 4096
  } io;
  struct {
    uint64_t gpa = 0;
    uint8_t data[8] = {};
    uint32_t len = 0;
    bool is_write = false;
  } mmio;
  struct {
    InternalSuberror suberror = InternalSuberror::Emulation;
    uint32_t ndata = 0;
    uint64_t data[16] = {};  // for Emulation: data[0] = insn length, then bytes packed LE
  } internal;
  struct {
    uint32_t exception = 0;
    uint64_t pc = 0, dr6 = 0, dr7 = 0;
  } debug;
  uint8_t eoi_vector = 0;  // IoapicEoi
};

// Per-KVM_RUN control block. The stop flags are written by other threads or by
// a signal handler on this thread (QEMU's SIGUSR1 handler sets immediate_exit
// inside KVM_RUN), so the engine polls them at every block boundary.
struct RunControl {
  // Points into the mmap'ed kvm_run; a signal handler may set it at any time.
  volatile uint8_t* immediate_exit = nullptr;
  // Our own kick (KVM_RUN from another thread must stop): release-set by the
  // kicker, acquire-read and cleared by the vCPU thread.
  std::atomic<bool>* kick = nullptr;
  // kvm_run->request_interrupt_window as read at entry.
  bool request_interrupt_window = false;
  // The PIO data page (kvm_run + 4096) where IN/OUT data lives.
  uint8_t* pio_page = nullptr;

  bool stop_requested() const {
    return (immediate_exit && *immediate_exit) || (kick && kick->load(std::memory_order_acquire));
  }
};

// The "in-kernel" devices one vCPU reaches without an exit to user space
// (machine/ implements it when the VM has an irqchip: the PIC/PIT/ELCR ports,
// the IOAPIC and LAPIC pages, ioeventfds, the LAPIC MSRs and the interrupt
// line into the CPU). Every method is called on the vCPU thread inside run().
class LocalDevices {
 public:
  virtual ~LocalDevices() = default;
  // Port I/O / MMIO taken by an in-kernel device; false: exit to user space.
  // `data` holds the value (write) or receives it (read), little endian.
  virtual bool pio(uint16_t port, unsigned size, bool out, void* data) = 0;
  virtual bool mmio(uint64_t gpa, unsigned len, bool write, void* data) = 0;
  // After a handled access: an exit the device wants once the instruction
  // retires (split irqchip: KVM_EXIT_IOAPIC_EOI). false: none.
  virtual bool take_exit(VcpuExit& out) = 0;
  // The vector the CPU takes now (LAPIC first, then the PIC's ExtINT), already
  // acknowledged; -1 if none. Called only with IF=1 and no interrupt shadow.
  // Clears or re-sets `attention`.
  virtual int take_interrupt() = 0;
  // HLT with an in-kernel LAPIC: sleep until an interrupt is deliverable
  // (IF=1 as given), the stop flags or a signal. true: an interrupt woke it.
  virtual bool wait_halted(const RunControl& ctl, bool if_flag) = 0;
  // IA32_APIC_BASE, x2APIC 0x800-0x8ff, TSC_DEADLINE: 0 = not a LAPIC MSR,
  // 1 = done, -1 = #GP (guest) / refused (host). `guest_tsc`: the guest's TSC
  // now, for IA32_TSC_DEADLINE (k_msr_tsc_deadline; 0 for other MSRs).
  static constexpr uint32_t k_msr_tsc_deadline = 0x6e0;
  virtual int msr_read(uint32_t index, uint64_t& value, bool host, uint64_t guest_tsc) = 0;
  virtual int msr_write(uint32_t index, uint64_t value, bool host, uint64_t guest_tsc) = 0;
  // True once after user space raised an interrupt (KVM_IRQ_LINE, KVM_SIGNAL_MSI,
  // an irqfd) without the vCPU leaving KVM_RUN: the guest may now run code
  // that user space wrote meanwhile (a disk DMA), so the engine revalidates
  // its decoded blocks as it does at every KVM_RUN entry.
  virtual bool take_external_event() = 0;
  // x87 FERR# with CR0.NE = 0 (SDM vol. 1, 8.7 and D.2): a waiting FP/MMX
  // instruction found an unmasked exception pending (FSW.ES). A PC's chipset
  // turns FERR# into IRQ 13 and a write to port 0xF0 asserts IGNNE#.
  // Mf: no chipset to signal (no in-kernel PIC): raise #MF as Linux KVM does.
  // Ignore: IGNNE# is asserted, the instruction runs. Wait: FERR# is asserted
  // (IRQ 13 raised on the first assertion); the CPU freezes until an interrupt.
  enum class FerrAction : uint8_t { Mf, Ignore, Wait };
  virtual FerrAction fpu_error() { return FerrAction::Mf; }
  // FSW.ES was found clear after a Wait or Ignore: FERR# (and IGNNE#) deassert.
  virtual void fpu_error_clear() {}
  // NMI, INIT and SIPI messages the LAPIC accepted (IPIs, MSIs, NMI/INIT
  // LVTs), taken whatever IF is. An INIT has already reset the LAPIC; `bsp`
  // is IA32_APIC_BASE.BSP (KVM's kvm_vcpu_is_bsp). Clears `apic_events`.
  struct ApicEvents {
    bool nmi = false, init = false, sipi = false, bsp = false;
    uint8_t sipi_vector = 0;
  };
  virtual ApicEvents take_apic_events() = 0;
  // Set (release), with `attention`, by any thread when take_apic_events has
  // something; read only when attention is set or the vCPU waits.
  std::atomic<bool> apic_events{false};

  // Set (release) by any thread when take_interrupt may have something;
  // the engine reads it (relaxed) at block boundaries, so the hot path takes
  // no lock.
  std::atomic<bool> attention{false};
};

// One virtual CPU. vCPU thread only, except where noted; machine/ serialises
// all calls with the per-vCPU mutex (as Linux's vcpu->mutex).
class VcpuBackend {
 public:
  virtual ~VcpuBackend() = default;

  // Runs until an exit. At entry first completes a pending IN (data in
  // ctl.pio_page) or MMIO read (data given by complete_mmio_read), then checks
  // the stop flags, then delivers a queued interrupt, then executes.
  virtual VcpuExit run(RunControl& ctl) = 0;
  // Data for the pending MMIO read exit, copied from kvm_run->mmio.data before run().
  virtual void complete_mmio_read(std::span<const uint8_t> data) = 0;

  virtual Regs get_regs() const = 0;
  virtual void set_regs(const Regs& r) = 0;
  virtual SpecialRegs get_sregs() const = 0;
  virtual bool set_sregs(const SpecialRegs& s) = 0;  // false: invalid (EINVAL)
  // get_fpu also reports XSTATE_BV (XINUSE) and XCR0 for KVM_GET_XSAVE/_XCRS.
  virtual FpuState get_fpu() const = 0;
  virtual bool set_fpu(const FpuState& f) = 0;  // legacy region only (KVM_SET_FPU)
  // KVM_SET_XSAVE: f.fxsave and f.xstate_bv, already validated; components not
  // in xstate_bv are put in their initial configuration.
  virtual void set_xsave(const FpuState& f) = 0;
  // KVM_SET_XCRS: false if XCR0 is invalid for the guest's CPUID (EINVAL).
  virtual bool set_xcr0(uint64_t xcr0) = 0;
  virtual DebugRegs get_debugregs() const = 0;
  virtual void set_debugregs(const DebugRegs& d) = 0;
  virtual Events get_events() const = 0;
  virtual void set_events(const Events& e) = 0;
  virtual MpState get_mp_state() const = 0;
  virtual void set_mp_state(MpState s) = 0;
  // KVM_GET_MP_STATE with an in-kernel LAPIC: act on the INIT/SIPI it latched
  // first (kvm_apic_accept_events), so the state reported is the new one.
  virtual void accept_events() {}

  // MSR access as KVM_GET/SET_MSRS (host_initiated = true) sees it. false: not
  // handled (the ioctl stops counting there).
  virtual bool get_msr(uint32_t index, uint64_t& value) const = 0;
  virtual bool set_msr(uint32_t index, uint64_t value) = 0;

  // The table the guest's CPUID answers from (KVM_SET_CPUID2).
  virtual void set_cpuid(std::vector<CpuidEntry> entries) = 0;

  // KVM_INTERRUPT: queue an external interrupt, delivered at the next entry.
  // false if one is already queued (EEXIST).
  virtual bool queue_interrupt(uint8_t vector) = 0;
  // KVM_NMI.
  virtual void queue_nmi() = 0;
  // kvm_run->ready_for_interrupt_injection: IF=1, no shadow, nothing queued.
  virtual bool ready_for_interrupt_injection() const = 0;
  virtual bool if_flag() const = 0;
  virtual uint64_t apic_base() const = 0;
  virtual uint64_t cr8() const = 0;
  virtual void set_cr8(uint64_t v) = 0;
  // The in-kernel devices of this vCPU (null: none, every access exits).
  // Not owned; set before the first run().
  virtual void attach_local_devices(LocalDevices* d) = 0;
};

class VmBackend {
 public:
  virtual ~VmBackend() = default;
  virtual std::unique_ptr<VcpuBackend> create_vcpu(VcpuId id) = 0;
};

// The software engine: cpu/soft.
std::unique_ptr<VmBackend> make_soft_vm(MemoryMapSource& memory);

// What the engine can execute: the KVM_GET_SUPPORTED_CPUID answer.
std::vector<CpuidEntry> soft_supported_cpuid();
// MSRs the engine implements: the KVM_GET_MSR_INDEX_LIST answer.
std::vector<uint32_t> soft_msr_index_list();

}  // namespace anykvm::cpu
