// The VM's "in-kernel irqchip" as Linux KVM has it (arch/x86/kvm: i8259.c,
// ioapic.c, lapic.c, i8254.c, irq_comm.c; virt/kvm/eventfd.c), built from the
// devices/ state machines: the in-kernel PIO bus (PIC, ELCR, PIT and, with
// KVM_PIT_SPEAKER_DUMMY, port 0x61) and MMIO bus (IOAPIC page, each vCPU's
// LAPIC page) consulted before an exit to user space, the GSI routing table
// (KVM's default routes after KVM_CREATE_IRQCHIP; KVM_SET_GSI_ROUTING replaces
// it), irqfds, and the timers; its buses also take the VM's ioeventfds
// (machine/ioeventfd.h) before any exit.
//
// Timers and irqfds: one worker thread per VM (not one per device): it sleeps
// in epoll on a CLOCK_MONOTONIC timerfd armed for the earliest PIT/LAPIC
// deadline and on the irqfds, so a timer fires on time while a vCPU runs guest
// code that never exits, and the engine's hot path stays one relaxed atomic
// load per block (LocalDevices::attention). While a vCPU is halted in KVM_RUN
// it keeps the timers itself instead (one halted vCPU at a time): it sleeps in
// ppoll until the earliest deadline and expires the timers when it wakes, so
// an idle guest's tick costs one thread wake, not two (worker, then vCPU).
//
// Split mode (KVM_CAP_SPLIT_IRQCHIP): only the LAPICs are here; GSIs route to
// MSIs, and EOIs of level-triggered vectors exit as KVM_EXIT_IOAPIC_EOI.
// PIT reinjection (KVM's default) is driven by the ack notifiers of GSI 0 (PIC
// EOI or auto-EOI INTA of IRQ0, IOAPIC EOI of its pin's vector) and reset by
// an unmask (mask notifier). Left out: irqfd resample on the PIC path, TPR access
// reporting, the vAPIC page, more than one IOAPIC.
//
// Threading: one lock (m_lock) around every device call, as the devices
// require (calls re-enter across them); ApicBus/IrqLine callbacks run with it
// held. Any thread may call the public methods.
#pragma once
#include <signal.h>

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <thread>
#include <vector>

#include "base/result.h"
#include "base/types.h"
#include "cpu/backend.h"
#include "devices/apic_bus.h"
#include "devices/edges.h"
#include "devices/ioapic.h"
#include "devices/lapic.h"
#include "devices/pic.h"
#include "devices/pit.h"
#include "machine/ioeventfd.h"

namespace anykvm::machine {

enum class IrqchipMode : uint8_t { Kernel, Split };

// KVM_IRQCHIP_PIC_MASTER / _SLAVE / _IOAPIC.
enum class IrqchipId : uint32_t { PicMaster = 0, PicSlave = 1, Ioapic = 2 };

// One routing entry (struct kvm_irq_routing_entry, irqchip and MSI kinds).
struct GsiRoute {
  enum class Kind : uint8_t { Irqchip, Msi } kind = Kind::Irqchip;
  uint32_t gsi = 0;
  IrqchipId chip = IrqchipId::PicMaster;
  uint32_t pin = 0;
  uint64_t msi_address = 0;
  uint32_t msi_data = 0;
};

// Who drives a GSI; the levels of all sources are OR-ed (KVM's irq_source_id).
enum class IrqSource : uint8_t { User = 0, Pit = 1, Resample = 2, Ferr = 3 };

constexpr uint32_t k_max_gsi = 4096;  // KVM_MAX_IRQ_ROUTES

class Irqchip;

// One vCPU's LAPIC and wake-up, as the engine sees it (cpu::LocalDevices).
// Engine-side methods: the vCPU thread. wake(): any thread, m_lock held.
class VcpuIrq final : public cpu::LocalDevices {
 public:
  VcpuIrq(Irqchip& chip, VcpuId id);
  ~VcpuIrq() override;

  devices::Lapic& lapic() { return m_lapic; }  // m_lock held
  VcpuId id() const { return m_id; }
  // The KVM_SET_SIGNAL_MASK mask that HLT sleeps with (not owned; may be null).
  void set_sigmask_source(const std::optional<sigset_t>* mask) { m_sigmask = mask; }

  bool pio(uint16_t port, unsigned size, bool out, void* data) override;
  bool mmio(uint64_t gpa, unsigned len, bool write, void* data) override;
  bool take_exit(cpu::VcpuExit& out) override;
  int take_interrupt() override;
  bool wait_halted(const cpu::RunControl& ctl, bool if_flag) override;
  int msr_read(uint32_t index, uint64_t& value, bool host, uint64_t guest_tsc) override;
  int msr_write(uint32_t index, uint64_t value, bool host, uint64_t guest_tsc) override;
  bool take_external_event() override { return m_external.exchange(false, std::memory_order_acq_rel); }
  ApicEvents take_apic_events() override;
  // User space raised an interrupt (any thread).
  void note_external_event() { m_external.store(true, std::memory_order_release); }

  // x87 FERR# -> IRQ 13 and IGNNE# by port 0xF0, as a PC chipset (full mode).
  FerrAction fpu_error() override;
  void fpu_error_clear() override;

  // Something may be deliverable: set attention and wake a HLT sleep.
  void wake();
  // The BSP's LVT LINT0 as KVM_X86_QUIRK_LINT0_REENABLED leaves it (m_lock held).
  void lint0_quirk();
  // The EOI exit of split mode, for the access in progress (m_lock held).
  void post_eoi_exit(uint8_t vector) { m_eoi_exit = vector; }

 private:
  Irqchip& m_chip;
  VcpuId m_id;
  devices::Lapic m_lapic;
  int m_wake_fd = -1;  // eventfd
  std::atomic<bool> m_sleeping{false};
  std::atomic<bool> m_external{false};
  const std::optional<sigset_t>* m_sigmask = nullptr;
  std::optional<uint8_t> m_eoi_exit;  // m_lock
  bool m_ferr = false;   // FERR# asserted (vCPU thread)
  bool m_ignne = false;  // IGNNE# asserted by a write to port 0xF0 while FERR# was (vCPU thread)
  friend class Irqchip;  // keep_timers: m_sleeping, m_wake_fd
};

class Irqchip {
 public:
  // The worker thread's name (/proc/PID/task/TID/comm).
  static constexpr const char* k_worker_name = "anykvm-irqchip";
  // Kernel: PIC pair + IOAPIC + default routes. Split: LAPICs only, no routes.
  // Its buses take the VM's ioeventfds before any exit.
  Irqchip(IrqchipMode mode, Ioeventfds* ioeventfds);
  ~Irqchip();
  Irqchip(const Irqchip&) = delete;
  Irqchip& operator=(const Irqchip&) = delete;

  IrqchipMode mode() const { return m_mode; }
  bool full() const { return m_mode == IrqchipMode::Kernel; }

  // A vCPU was created: its LAPIC (owned here).
  VcpuIrq* add_vcpu(VcpuId id);

  // KVM_IRQ_LINE(_STATUS): KVM_IRQ_LINE_STATUS's status (sum of deliveries, -1 masked).
  int set_irq(uint32_t gsi, bool level, IrqSource source = IrqSource::User);
  // KVM_SIGNAL_MSI: >0 delivered, 0 coalesced, -1 no destination (KVM's return).
  int signal_msi(uint64_t address, uint32_t data);
  // KVM_SET_GSI_ROUTING (validated by the caller).
  void set_routing(std::vector<GsiRoute> routes);
  static std::vector<GsiRoute> default_routes();

  // KVM_GET/SET_IRQCHIP (full mode only).
  devices::PicChipState get_pic(devices::PicPair::Chip c);
  void set_pic(devices::PicPair::Chip c, const devices::PicChipState& s);
  devices::IoapicState get_ioapic();
  void set_ioapic(const devices::IoapicState& s);

  // KVM_CREATE_PIT2 / KVM_GET/SET_PIT2 / KVM_REINJECT_CONTROL.
  Result<void> create_pit(bool speaker_dummy);
  bool has_pit();
  devices::PitState get_pit();
  void set_pit(const devices::PitState& s);
  void set_pit_reinject(bool on);

  // KVM_GET/SET_LAPIC.
  devices::LapicState get_lapic(VcpuIrq& v);
  void set_lapic(VcpuIrq& v, const devices::LapicState& s);
  uint64_t apic_base(VcpuIrq& v);
  bool set_apic_base(VcpuIrq& v, uint64_t value);  // host-initiated
  uint8_t cr8(VcpuIrq& v);
  void set_cr8(VcpuIrq& v, uint8_t value);

  // KVM_IRQFD, with Linux's checks; 0 or -errno.
  int irqfd(int fd, uint32_t gsi, bool deassign, std::optional<int> resamplefd);

 private:
  friend class VcpuIrq;
  class Bus;      // devices::ApicBus
  class PicOut;   // the PIC's INT pin
  class PitIrq0;  // the PIT's OUT0 line

  struct Irqfd {
    int fd = -1;  // our dup
    uint32_t gsi = 0;
    int resamplefd = -1;  // our dup, or -1
    bool asserted = false;
  };

  // All below: m_lock held.
  int set_irq_locked(uint32_t gsi, bool level, IrqSource source);
  int deliver_msi(uint64_t address, uint32_t data);
  bool bus_pio(uint16_t port, unsigned size, bool out, void* data);
  bool bus_mmio(VcpuIrq& from, uint64_t gpa, unsigned len, bool write, void* data);
  bool ioeventfd_write(bool pio, uint64_t addr, unsigned len, const void* data);
  void on_eoi(uint8_t vector);
  bool deliverable(VcpuIrq& v);  // an interrupt v's CPU would take with IF=1
  static bool has_apic_event(VcpuIrq& v);  // NMI/INIT/SIPI for take_apic_events
  // PIT reinjection (KVM's ack and mask notifiers on GSI 0).
  bool pit_routes_to(IrqchipId chip, uint32_t pin) const;
  void pit_ack_ioapic(uint8_t vector);
  void pit_ack_pic_inta(uint8_t vector);
  uint64_t ioapic_pit_masked_pins() const;
  void refresh();                // attention of every vCPU, and the timer
  void note_external_event();    // an interrupt from user space: see take_external_event
  void rearm_timer();
  int64_t next_deadline();        // the earliest PIT/LAPIC event (CLOCK_MONOTONIC ns), or -1
  void run_timers();              // expire what is due
  void arm_timerfd(int64_t abs_ns);  // the worker's timerfd (-1 disarms)
  // A halted vCPU keeps the timers (no worker wake per tick): it expires what
  // is due and gets the deadline to sleep until (-1: none, or another vCPU
  // keeps them); release_timers hands them back to the worker.
  int64_t keep_timers(VcpuIrq& v);
  void release_timers(VcpuIrq& v);
  void worker();

  IrqchipMode m_mode;
  std::mutex m_lock;
  devices::MonotonicClock m_clock;
  std::unique_ptr<Bus> m_bus;
  std::unique_ptr<PicOut> m_pic_out;
  std::unique_ptr<PitIrq0> m_pit_irq0;
  std::unique_ptr<devices::PicPair> m_pic;
  std::unique_ptr<devices::Ioapic> m_ioapic;
  std::unique_ptr<devices::Pit> m_pit;
  bool m_pit_speaker = false;
  std::vector<std::unique_ptr<VcpuIrq>> m_vcpus;
  VcpuIrq* m_current = nullptr;  // the vCPU whose access is in progress
  std::multimap<uint32_t, GsiRoute> m_routes;
  std::map<uint32_t, uint8_t> m_gsi_levels;  // bit per IrqSource
  Ioeventfds* m_ioeventfds;  // the VM's (not owned)
  std::vector<Irqfd> m_irqfds;
  int64_t m_armed_ns = -1;  // timerfd deadline (-1 disarmed)
  VcpuIrq* m_timer_owner = nullptr;  // the halted vCPU keeping the timers, or null (the worker)
  int64_t m_owner_deadline = -1;     // what it sleeps until
  bool m_owner_waiting = false;      // it is (about to be) in ppoll with that deadline

  int m_epoll = -1, m_timerfd = -1, m_stopfd = -1;
  std::thread m_thread;
};

}  // namespace anykvm::machine
