// The in-kernel irqchip: buses, GSI routing, eventfds, timers; see irqchip.h.
#include "machine/irqchip.h"

#include <fcntl.h>
#include <linux/kcmp.h>
#include <poll.h>
#include <pthread.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/syscall.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>

namespace anykvm::machine {

using devices::IrqResult;

namespace {

constexpr uint64_t k_ioapic_mmio_len = 0x100;  // IOAPIC_MEM_LENGTH
constexpr uint64_t k_lapic_mmio_len = 0x1000;  // LAPIC_MMIO_LENGTH
constexpr uint32_t k_msr_apic_base = 0x1b;
constexpr size_t k_lapic_lvt0 = size_t(devices::ApicReg::LvtLint0);

int64_t now_ns() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return int64_t(ts.tv_sec) * 1'000'000'000 + ts.tv_nsec;
}

}  // namespace

// ---- the edges into the devices ----

class Irqchip::Bus final : public devices::ApicBus {
 public:
  explicit Bus(Irqchip& chip) : m_chip(chip) {
    m_router.on_eoi([this](Vector v) { m_chip.on_eoi(v.raw()); });
    m_router.on_accepted([this](devices::Lapic& l) {
      for (auto& v : m_chip.m_vcpus)
        if (&v->lapic() == &l) v->wake();
    });
  }
  void add(devices::Lapic* l) { m_router.add(l); }
  int deliver(const devices::ApicMessage& msg, devices::Lapic* source) override {
    int r = m_router.deliver(msg, source);
    // kvm_irq_delivery_to_apic(_fast)'s count: a fixed interrupt counts for
    // every software-enabled destination even when its IRR bit was already
    // set (__apic_accept_irq returns 1), and no destination is 0.
    using devices::DeliveryMode;
    if (msg.delivery_mode == DeliveryMode::Fixed || msg.delivery_mode == DeliveryMode::LowestPriority) {
      int n = 0;
      for (auto& v : m_chip.m_vcpus)
        if (v->lapic().matches(msg, source) && v->lapic().sw_enabled()) ++n;
      return msg.delivery_mode == DeliveryMode::LowestPriority && n ? 1 : n;
    }
    return r < 0 ? 0 : r;
  }
  void broadcast_eoi(Vector vector) override { m_router.broadcast_eoi(vector); }
  void edge_eoi(Vector vector) override { m_chip.pit_ack_ioapic(vector.raw()); }

 private:
  Irqchip& m_chip;
  devices::ApicRouter m_router;
};

// The master PIC's INT pin: the BSP's LINT0 / INTR (KVM: kvm_pic_update_irq).
class Irqchip::PicOut final : public devices::IrqLine {
 public:
  explicit PicOut(Irqchip& chip) : m_chip(chip) {}
  void set_level(bool level) override {
    if (!level) return;
    for (auto& v : m_chip.m_vcpus) v->wake();
  }

 private:
  Irqchip& m_chip;
};

// PIT OUT0 -> GSI 0 (KVM_PIT_IRQ_SOURCE_ID).
class Irqchip::PitIrq0 final : public devices::IrqLine {
 public:
  explicit PitIrq0(Irqchip& chip) : m_chip(chip) {}
  void set_level(bool level) override { m_chip.set_irq_locked(0, level, IrqSource::Pit); }

 private:
  Irqchip& m_chip;
};

// ---- VcpuIrq ----

VcpuIrq::VcpuIrq(Irqchip& chip, VcpuId id) : m_chip(chip), m_id(id), m_lapic(id, chip.m_clock, *chip.m_bus) {
  m_wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  m_lapic.reset(id.raw() == 0);  // kvm_lapic_reset: BSP is vCPU 0 (KVM_SET_BOOT_CPU_ID not served)
  m_lapic.set_tsc_khz(1'000'000);  // the engine's TSC runs at 1 GHz
  lint0_quirk();
}

void VcpuIrq::lint0_quirk() {
  if (m_id.raw() != 0) return;
  // KVM_X86_QUIRK_LINT0_REENABLED (on by default): the BSP's LVT LINT0 is
  // ExtINT, unmasked, so the PIC reaches the CPU through the enabled LAPIC
  // (kvm_lapic_reset, at creation and on INIT).
  devices::LapicState s = m_lapic.get_state();
  const uint32_t extint = uint32_t(devices::DeliveryMode::ExtInt) << devices::k_delivery_mode_shift;
  std::memcpy(s.regs + k_lapic_lvt0, &extint, sizeof(extint));
  m_lapic.set_state(s);
}

cpu::LocalDevices::ApicEvents VcpuIrq::take_apic_events() {
  // kvm_apic_accept_events: INIT resets the LAPIC (kvm_lapic_reset with
  // init_event) before the CPU; an NMI message becomes the CPU's pending NMI.
  std::lock_guard<std::mutex> g(m_chip.m_lock);
  apic_events.store(false, std::memory_order_relaxed);
  ApicEvents e;
  e.nmi = m_lapic.take_event(devices::LapicEvent::Nmi);
  e.init = m_lapic.take_event(devices::LapicEvent::Init);
  e.sipi = m_lapic.take_event(devices::LapicEvent::StartUp);
  e.sipi_vector = m_lapic.sipi_vector();
  e.bsp = m_lapic.apic_base() & devices::bits(devices::ApicBaseBits::Bsp);
  if (e.init) {
    m_lapic.init();
    lint0_quirk();
  }
  m_chip.refresh();
  return e;
}

VcpuIrq::~VcpuIrq() {
  if (m_wake_fd >= 0) close(m_wake_fd);
}

void VcpuIrq::wake() {
  attention.store(true, std::memory_order_seq_cst);
  if (m_sleeping.load(std::memory_order_seq_cst)) signal_eventfd(m_wake_fd);
}

cpu::LocalDevices::FerrAction VcpuIrq::fpu_error() {
  // Only the chipset of a full irqchip routes FERR# (IRQ 13 on the slave PIC,
  // IOAPIC pin 13); split mode leaves the PIC to user space: #MF as KVM.
  if (!m_chip.full()) return FerrAction::Mf;
  if (m_ignne) return FerrAction::Ignore;
  if (!m_ferr) {
    m_ferr = true;
    // IRQ 13 is edge-triggered: one interrupt per FERR# assertion.
    std::lock_guard<std::mutex> g(m_chip.m_lock);
    m_chip.set_irq_locked(13, true, IrqSource::Ferr);
    m_chip.set_irq_locked(13, false, IrqSource::Ferr);
    m_chip.refresh();
  }
  return FerrAction::Wait;
}

void VcpuIrq::fpu_error_clear() { m_ferr = m_ignne = false; }

bool VcpuIrq::pio(uint16_t port, unsigned size, bool out, void* data) {
  // A write to port 0xF0 asserts IGNNE# while FERR# is asserted; the port
  // itself stays user space's (QEMU's ioportF0).
  if (out && port == 0xf0 && m_ferr) m_ignne = true;
  std::lock_guard<std::mutex> g(m_chip.m_lock);
  m_chip.m_current = this;
  bool handled = m_chip.bus_pio(port, size, out, data);
  if (handled) m_chip.refresh();
  m_chip.m_current = nullptr;
  return handled;
}

bool VcpuIrq::mmio(uint64_t gpa, unsigned len, bool write, void* data) {
  std::lock_guard<std::mutex> g(m_chip.m_lock);
  m_chip.m_current = this;
  bool handled = m_chip.bus_mmio(*this, gpa, len, write, data);
  if (handled) m_chip.refresh();
  m_chip.m_current = nullptr;
  return handled;
}

bool VcpuIrq::take_exit(cpu::VcpuExit& out) {
  std::lock_guard<std::mutex> g(m_chip.m_lock);
  if (!m_eoi_exit) return false;
  out = cpu::VcpuExit{};
  out.reason = cpu::ExitReason::IoapicEoi;
  out.eoi_vector = *m_eoi_exit;
  m_eoi_exit.reset();
  return true;
}

int VcpuIrq::take_interrupt() {
  std::lock_guard<std::mutex> g(m_chip.m_lock);
  attention.store(false, std::memory_order_relaxed);
  int vec = -1;
  if (m_lapic.has_interrupt()) {
    vec = m_lapic.acknowledge().raw();
  } else if (m_chip.full() && m_id.raw() == 0 && m_lapic.accepts_pic_interrupts() && m_chip.m_pic->has_interrupt()) {
    vec = m_chip.m_pic->acknowledge().raw();  // ExtINT: the PIC's INTA cycles
    m_chip.pit_ack_pic_inta(uint8_t(vec));
  }
  m_chip.refresh();  // more pending: attention again
  return vec;
}

bool VcpuIrq::wait_halted(const cpu::RunControl& ctl, bool if_flag) {
  // Signals are blocked between the checks and ppoll, which unblocks them
  // atomically, so a kick that lands in between is not lost.
  sigset_t all, old;
  sigfillset(&all);
  pthread_sigmask(SIG_BLOCK, &all, &old);
  const sigset_t* mask = (m_sigmask && *m_sigmask) ? &**m_sigmask : &old;
  bool woke = false;
  for (;;) {
    m_sleeping.store(true, std::memory_order_seq_cst);
    if (ctl.stop_requested()) break;
    if (apic_events.load(std::memory_order_acquire)) {  // NMI/INIT/SIPI wake whatever IF is
      woke = true;
      break;
    }
    int64_t deadline;
    {
      std::lock_guard<std::mutex> g(m_chip.m_lock);
      deadline = m_chip.keep_timers(*this);  // may expire timers: check for events after it
      if (apic_events.load(std::memory_order_acquire) || (if_flag && m_chip.deliverable(*this))) {
        woke = true;
        break;
      }
    }
    timespec rel{};
    if (deadline >= 0) {
      int64_t d = std::max<int64_t>(deadline - now_ns(), 0);
      rel.tv_sec = d / 1'000'000'000;
      rel.tv_nsec = d % 1'000'000'000;
    }
    pollfd p{m_wake_fd, POLLIN, 0};
    int r = ppoll(&p, 1, deadline >= 0 ? &rel : nullptr, mask);
    if (r < 0 && errno == EINTR) break;  // any signal ends KVM_RUN (-EINTR), as Linux
    if (r > 0) {
      uint64_t drained;
      ssize_t n = read(m_wake_fd, &drained, sizeof(drained));
      (void)n;
    }
  }
  m_sleeping.store(false, std::memory_order_relaxed);
  {
    std::lock_guard<std::mutex> g(m_chip.m_lock);
    m_chip.release_timers(*this);
  }
  pthread_sigmask(SIG_SETMASK, &old, nullptr);
  if (woke) attention.store(true, std::memory_order_relaxed);
  return woke;
}

int VcpuIrq::msr_read(uint32_t index, uint64_t& value, bool, uint64_t) {
  if (index == k_msr_tsc_deadline) {  // kvm_get_lapic_tscdeadline_msr: 0 outside TSC-deadline mode
    std::lock_guard<std::mutex> g(m_chip.m_lock);
    value = m_lapic.tsc_deadline();
    return 1;
  }
  if (index == k_msr_apic_base) {
    std::lock_guard<std::mutex> g(m_chip.m_lock);
    value = m_lapic.apic_base();
    return 1;
  }
  if (devices::Lapic::is_x2apic_msr(index)) {
    std::lock_guard<std::mutex> g(m_chip.m_lock);
    std::optional<uint64_t> v = m_lapic.read_msr(index);
    if (!v) return -1;
    value = *v;
    return 1;
  }
  return 0;
}

int VcpuIrq::msr_write(uint32_t index, uint64_t value, bool host, uint64_t guest_tsc) {
  if (index == k_msr_tsc_deadline) {  // kvm_set_lapic_tscdeadline_msr: ignored outside TSC-deadline mode
    std::lock_guard<std::mutex> g(m_chip.m_lock);
    m_lapic.set_tsc_deadline(value, guest_tsc);
    m_chip.refresh();  // the worker's timerfd now covers the deadline
    return 1;
  }
  if (index != k_msr_apic_base && !devices::Lapic::is_x2apic_msr(index)) return 0;
  std::lock_guard<std::mutex> g(m_chip.m_lock);
  m_chip.m_current = this;
  bool ok = index == k_msr_apic_base ? m_lapic.set_apic_base(value, host) : m_lapic.write_msr(index, value);
  m_chip.refresh();
  m_chip.m_current = nullptr;
  return ok ? 1 : -1;
}

// ---- Irqchip ----

Irqchip::Irqchip(IrqchipMode mode, Ioeventfds* ioeventfds) : m_mode(mode), m_ioeventfds(ioeventfds) {
  m_bus = std::make_unique<Bus>(*this);
  if (full()) {
    m_pic = std::make_unique<devices::PicPair>();
    m_pic_out = std::make_unique<PicOut>(*this);
    m_pic->set_output(m_pic_out.get());
    m_ioapic = std::make_unique<devices::Ioapic>(*m_bus);
    for (const GsiRoute& r : default_routes()) m_routes.emplace(r.gsi, r);
  }
  m_epoll = epoll_create1(EPOLL_CLOEXEC);
  m_timerfd = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK);
  m_stopfd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.fd = m_timerfd;
  epoll_ctl(m_epoll, EPOLL_CTL_ADD, m_timerfd, &ev);
  ev.data.fd = m_stopfd;
  epoll_ctl(m_epoll, EPOLL_CTL_ADD, m_stopfd, &ev);
  m_thread = std::thread([this] { worker(); });
  pthread_setname_np(m_thread.native_handle(), k_worker_name);
}

Irqchip::~Irqchip() {
  signal_eventfd(m_stopfd);
  if (m_thread.joinable()) m_thread.join();
  for (Irqfd& f : m_irqfds) {
    close(f.fd);
    if (f.resamplefd >= 0) close(f.resamplefd);
  }
  close(m_epoll);
  close(m_timerfd);
  close(m_stopfd);
}

std::vector<GsiRoute> Irqchip::default_routes() {
  // kvm_setup_default_irq_routing (irq_comm.c): GSI 0-15 to the PIC pin and
  // the IOAPIC pin of the same number, GSI 16-23 to the IOAPIC.
  std::vector<GsiRoute> r;
  for (uint32_t gsi = 0; gsi < devices::k_ioapic_pins; ++gsi) {
    if (gsi < 16) {
      GsiRoute p;
      p.gsi = gsi;
      p.chip = gsi < 8 ? IrqchipId::PicMaster : IrqchipId::PicSlave;
      p.pin = gsi % 8;
      r.push_back(p);
    }
    GsiRoute io;
    io.gsi = gsi;
    io.chip = IrqchipId::Ioapic;
    io.pin = gsi;
    r.push_back(io);
  }
  return r;
}

VcpuIrq* Irqchip::add_vcpu(VcpuId id) {
  std::lock_guard<std::mutex> g(m_lock);
  m_vcpus.push_back(std::make_unique<VcpuIrq>(*this, id));
  VcpuIrq* v = m_vcpus.back().get();
  m_bus->add(&v->lapic());
  return v;
}

int Irqchip::set_irq(uint32_t gsi, bool level, IrqSource source) {
  std::lock_guard<std::mutex> g(m_lock);
  note_external_event();
  int r = set_irq_locked(gsi, level, source);
  refresh();
  return r;
}

int Irqchip::set_irq_locked(uint32_t gsi, bool level, IrqSource source) {
  // kvm_set_irq: every route of the GSI; the status is the sum of the
  // non-negative results, -1 if all were masked (or there is no route).
  uint8_t& lv = m_gsi_levels[gsi];
  const uint8_t bit = uint8_t(1u << unsigned(source));
  lv = level ? (lv | bit) : (lv & ~bit);
  const bool line = lv != 0;
  int ret = -1;
  auto [b, e] = m_routes.equal_range(gsi);
  for (auto it = b; it != e; ++it) {
    const GsiRoute& r = it->second;
    int res = -1;
    if (r.kind == GsiRoute::Kind::Msi) {
      res = line ? deliver_msi(r.msi_address, r.msi_data) : -1;
    } else if (r.chip == IrqchipId::Ioapic) {
      if (m_ioapic && r.pin < devices::k_ioapic_pins) res = int(m_ioapic->set_irq(r.pin, line));
    } else if (m_pic) {
      unsigned irq = r.pin + (r.chip == IrqchipId::PicSlave ? 8 : 0);
      res = int(m_pic->set_irq(irq, line));
    }
    if (res < 0) continue;
    ret = res + (ret < 0 ? 0 : ret);
  }
  return ret;
}

int Irqchip::deliver_msi(uint64_t address, uint32_t data) {
  devices::ApicMessage m = devices::msi_message(address, data, false);
  return m_bus->deliver(m, nullptr);
}

int Irqchip::signal_msi(uint64_t address, uint32_t data) {
  std::lock_guard<std::mutex> g(m_lock);
  note_external_event();
  int r = deliver_msi(address, data);
  refresh();
  return r;
}

void Irqchip::set_routing(std::vector<GsiRoute> routes) {
  std::lock_guard<std::mutex> g(m_lock);
  m_routes.clear();
  for (GsiRoute& r : routes) m_routes.emplace(r.gsi, r);
}

devices::PicChipState Irqchip::get_pic(devices::PicPair::Chip c) {
  std::lock_guard<std::mutex> g(m_lock);
  return m_pic->get_state(c);
}

void Irqchip::set_pic(devices::PicPair::Chip c, const devices::PicChipState& s) {
  std::lock_guard<std::mutex> g(m_lock);
  m_pic->set_state(c, s);
  refresh();
}

devices::IoapicState Irqchip::get_ioapic() {
  std::lock_guard<std::mutex> g(m_lock);
  return m_ioapic->get_state();
}

void Irqchip::set_ioapic(const devices::IoapicState& s) {
  std::lock_guard<std::mutex> g(m_lock);
  m_ioapic->set_state(s);
  refresh();
}

Result<void> Irqchip::create_pit(bool speaker_dummy) {
  std::lock_guard<std::mutex> g(m_lock);
  if (m_pit) return err(EEXIST);
  m_pit_irq0 = std::make_unique<PitIrq0>(*this);
  m_pit = std::make_unique<devices::Pit>(m_clock, m_pit_irq0.get());
  m_pit_speaker = speaker_dummy;
  return {};
}

bool Irqchip::has_pit() {
  std::lock_guard<std::mutex> g(m_lock);
  return m_pit != nullptr;
}

devices::PitState Irqchip::get_pit() {
  std::lock_guard<std::mutex> g(m_lock);
  return m_pit->get_state();
}

void Irqchip::set_pit(const devices::PitState& s) {
  std::lock_guard<std::mutex> g(m_lock);
  m_pit->set_state(s);
  refresh();
}

void Irqchip::set_pit_reinject(bool on) {
  std::lock_guard<std::mutex> g(m_lock);
  m_pit->set_reinject(on);
  refresh();
}

// ---- PIT reinjection: KVM's ack and mask notifiers on the PIT's GSI 0 ----

bool Irqchip::pit_routes_to(IrqchipId chip, uint32_t pin) const {
  auto [b, e] = m_routes.equal_range(0);
  for (auto it = b; it != e; ++it)
    if (it->second.kind == GsiRoute::Kind::Irqchip && it->second.chip == chip && it->second.pin == pin) return true;
  return false;
}

void Irqchip::pit_ack_ioapic(uint8_t vector) {
  // kvm_ioapic_update_eoi_one: an EOI of a pin's vector runs its ack
  // notifiers, edge-triggered pins included (ioapic_handled_vectors).
  if (!m_pit || !m_ioapic) return;
  const devices::IoapicState& s = m_ioapic->get_state();
  for (unsigned pin = 0; pin < devices::k_ioapic_pins; ++pin) {
    if ((s.redirtbl[pin] & devices::bits(devices::Redir::VectorMask)) != vector) continue;
    if (!pit_routes_to(IrqchipId::Ioapic, pin)) continue;
    m_pit->irq_acked();
    return;
  }
}

void Irqchip::pit_ack_pic_inta(uint8_t vector) {
  // pic_intack: with auto-EOI the ISR bit is cleared at INTA (pic_clear_isr),
  // which runs the ack notifiers.
  if (!m_pit || !pit_routes_to(IrqchipId::PicMaster, 0)) return;
  const devices::PicChipState& m = m_pic->get_state(devices::PicPair::Chip::Master);
  if (m.auto_eoi && vector == m.irq_base) m_pit->irq_acked();
}

devices::LapicState Irqchip::get_lapic(VcpuIrq& v) {
  std::lock_guard<std::mutex> g(m_lock);
  return v.lapic().get_state();
}

void Irqchip::set_lapic(VcpuIrq& v, const devices::LapicState& s) {
  std::lock_guard<std::mutex> g(m_lock);
  v.lapic().set_state(s);
  refresh();
}

uint64_t Irqchip::apic_base(VcpuIrq& v) {
  std::lock_guard<std::mutex> g(m_lock);
  return v.lapic().apic_base();
}

bool Irqchip::set_apic_base(VcpuIrq& v, uint64_t value) {
  std::lock_guard<std::mutex> g(m_lock);
  bool ok = v.lapic().set_apic_base(value, true);
  refresh();
  return ok;
}

uint8_t Irqchip::cr8(VcpuIrq& v) {
  std::lock_guard<std::mutex> g(m_lock);
  return v.lapic().cr8();
}

void Irqchip::set_cr8(VcpuIrq& v, uint8_t value) {
  std::lock_guard<std::mutex> g(m_lock);
  v.lapic().set_cr8(value);
  refresh();
}

// ---- buses ----

bool Irqchip::bus_pio(uint16_t port, unsigned size, bool out, void* data) {
  if (out && ioeventfd_write(true, port, size, data)) return true;
  if (m_pic && devices::PicPair::handles_port(Port(port))) {
    // picdev_read/write: only byte accesses do anything; others are swallowed.
    if (out) {
      const bool pit = m_pit && pit_routes_to(IrqchipId::PicMaster, 0);
      const devices::PicChipState before = m_pic->get_state(devices::PicPair::Chip::Master);
      if (size == 1) m_pic->write_port(Port(port), *static_cast<uint8_t*>(data));
      if (pit) {
        const devices::PicChipState& after = m_pic->get_state(devices::PicPair::Chip::Master);
        if ((before.imr & 1) && !(after.imr & 1)) m_pit->reset_reinject();  // kvm_fire_mask_notifiers
        if ((before.isr & 1) && !(after.isr & 1)) m_pit->irq_acked();       // pic_clear_isr
      }
    } else {
      std::memset(data, 0, size);
      if (size == 1) *static_cast<uint8_t*>(data) = m_pic->read_port(Port(port));
    }
    return true;
  }
  if (m_pit && devices::Pit::handles_port(Port(port)) && (port != devices::Pit::k_port_speaker || m_pit_speaker)) {
    // pit_ioport_read/write: the low byte of any size.
    if (out) {
      m_pit->write_port(Port(port), *static_cast<uint8_t*>(data));
    } else {
      std::memset(data, 0, size);
      *static_cast<uint8_t*>(data) = m_pit->read_port(Port(port));
    }
    return true;
  }
  return false;
}

bool Irqchip::bus_mmio(VcpuIrq& from, uint64_t gpa, unsigned len, bool write, void* data) {
  devices::Lapic& l = from.lapic();
  if (l.mmio_enabled() && gpa >= l.mmio_base().raw() && gpa < l.mmio_base().raw() + k_lapic_mmio_len) {
    uint32_t off = uint32_t(gpa - l.mmio_base().raw());
    if (write) {
      uint32_t v = 0;
      std::memcpy(&v, data, std::min(len, 4u));
      if (len <= 4) l.mmio_write(off, v, len);
    } else {
      std::memset(data, 0, len);
      uint32_t v = len <= 4 ? l.mmio_read(off, len) : 0;
      std::memcpy(data, &v, std::min(len, 4u));
    }
    return true;
  }
  if (m_ioapic && gpa >= m_ioapic->base().raw() && gpa < m_ioapic->base().raw() + k_ioapic_mmio_len) {
    uint32_t off = uint32_t(gpa - m_ioapic->base().raw());
    if (write) {
      uint32_t v = 0;
      std::memcpy(&v, data, std::min(len, 4u));
      uint64_t masked_before = 0;
      if (m_pit) masked_before = ioapic_pit_masked_pins();
      m_ioapic->mmio_write(off, v, len);
      // ioapic_write_indirect fires the mask notifiers on an unmask.
      if (m_pit && (masked_before & ~ioapic_pit_masked_pins())) m_pit->reset_reinject();
    } else {
      std::memset(data, 0, len);
      uint32_t v = m_ioapic->mmio_read(off, len);
      std::memcpy(data, &v, std::min(len, 4u));
    }
    return true;
  }
  return write && ioeventfd_write(false, gpa, len, data);
}

bool Irqchip::ioeventfd_write(bool pio, uint64_t addr, unsigned len, const void* data) {
  return m_ioeventfds && m_ioeventfds->write(pio ? IoBus::Pio : IoBus::Mmio, addr, len, data);
}

// ---- EOI and interrupts ----

void Irqchip::on_eoi(uint8_t vector) {
  if (!full()) {
    // Split: the IOAPIC is in user space (kvm_ioapic_send_eoi -> KVM_REQ_IOAPIC_EOI_EXIT).
    if (m_current) m_current->post_eoi_exit(vector);
    return;
  }
  // Ack notifiers before remote IRR clears (kvm_ioapic_update_eoi_one):
  // irqfd resample de-asserts its level and signals the resamplefd.
  const devices::IoapicState& s = m_ioapic->get_state();
  for (unsigned pin = 0; pin < devices::k_ioapic_pins; ++pin) {
    if ((s.redirtbl[pin] & devices::bits(devices::Redir::VectorMask)) != vector) continue;
    if (m_pit && pit_routes_to(IrqchipId::Ioapic, pin)) m_pit->irq_acked();
    for (auto& [gsi, r] : m_routes) {
      if (r.kind != GsiRoute::Kind::Irqchip || r.chip != IrqchipId::Ioapic || r.pin != pin) continue;
      for (Irqfd& f : m_irqfds) {
        if (f.gsi != gsi || f.resamplefd < 0 || !f.asserted) continue;
        f.asserted = false;
        set_irq_locked(gsi, false, IrqSource::Resample);
        signal_eventfd(f.resamplefd);
      }
    }
  }
  m_ioapic->eoi(Vector(vector));
}

void Irqchip::note_external_event() {
  for (auto& v : m_vcpus) v->note_external_event();
}

bool Irqchip::deliverable(VcpuIrq& v) {
  if (v.lapic().has_interrupt()) return true;
  return full() && v.id().raw() == 0 && v.lapic().accepts_pic_interrupts() && m_pic->has_interrupt();
}

uint64_t Irqchip::ioapic_pit_masked_pins() const {
  uint64_t m = 0;
  const devices::IoapicState& s = m_ioapic->get_state();
  for (unsigned pin = 0; pin < devices::k_ioapic_pins; ++pin)
    if ((s.redirtbl[pin] & devices::bits(devices::Redir::Masked)) && pit_routes_to(IrqchipId::Ioapic, pin))
      m |= uint64_t(1) << pin;
  return m;
}

bool Irqchip::has_apic_event(VcpuIrq& v) {
  using devices::LapicEvent;
  return v.lapic().pending_events() & (devices::bits(LapicEvent::Nmi) | devices::bits(LapicEvent::Init) |
                                       devices::bits(LapicEvent::StartUp));
}

void Irqchip::refresh() {
  for (auto& v : m_vcpus) {
    if (has_apic_event(*v)) {
      v->apic_events.store(true, std::memory_order_release);
      v->wake();
    } else if (deliverable(*v)) {
      v->wake();
    }
  }
  rearm_timer();
}

int64_t Irqchip::next_deadline() {
  std::optional<Nanoseconds> next;
  auto take = [&](std::optional<Nanoseconds> t) {
    if (t && (!next || *t < *next)) next = t;
  };
  if (m_pit) take(m_pit->next_event());
  for (auto& v : m_vcpus) take(v->lapic().next_timer_deadline());
  return next ? std::max<int64_t>(next->value, 1) : -1;
}

void Irqchip::run_timers() {
  if (m_pit) m_pit->update();
  for (auto& v : m_vcpus) v->lapic().update();
}

void Irqchip::rearm_timer() {
  int64_t want = next_deadline();
  if (m_timer_owner) {
    // A halted vCPU keeps the timers: it sleeps until the deadline it saw, so
    // a different one must wake it to sleep again with the new timeout.
    if (m_owner_waiting && want != m_owner_deadline) {
      m_owner_waiting = false;
      signal_eventfd(m_timer_owner->m_wake_fd);
    }
    return;
  }
  arm_timerfd(want);
}

void Irqchip::arm_timerfd(int64_t want) {
  if (want == m_armed_ns) return;
  m_armed_ns = want;
  itimerspec its{};
  if (want > 0) {
    its.it_value.tv_sec = want / 1'000'000'000;
    its.it_value.tv_nsec = want % 1'000'000'000;
  }
  timerfd_settime(m_timerfd, TFD_TIMER_ABSTIME, &its, nullptr);
}

int64_t Irqchip::keep_timers(VcpuIrq& v) {
  if (m_timer_owner && m_timer_owner != &v) return -1;  // another halted vCPU keeps them
  if (!m_timer_owner) {
    m_timer_owner = &v;
    arm_timerfd(-1);  // the worker no longer wakes for them
  }
  m_owner_waiting = false;
  int64_t want = next_deadline();
  if (want > 0 && want <= now_ns()) {
    // Expire what is due. v is not asleep while it does (its own wake() must
    // not signal the eventfd it is about to poll); every waker holds m_lock.
    v.m_sleeping.store(false, std::memory_order_relaxed);
    run_timers();
    refresh();
    v.m_sleeping.store(true, std::memory_order_seq_cst);
    want = next_deadline();
  }
  m_owner_deadline = want;
  m_owner_waiting = true;
  return want;
}

void Irqchip::release_timers(VcpuIrq& v) {
  if (m_timer_owner != &v) return;
  m_timer_owner = nullptr;
  m_owner_waiting = false;
  arm_timerfd(next_deadline());  // the worker takes them over while v runs
}

void Irqchip::worker() {
  epoll_event evs[16];
  for (;;) {
    int n = epoll_wait(m_epoll, evs, 16, -1);
    if (n < 0) {
      if (errno == EINTR) continue;
      return;
    }
    std::lock_guard<std::mutex> g(m_lock);
    for (int i = 0; i < n; ++i) {
      int fd = evs[i].data.fd;
      uint64_t count;
      if (fd == m_stopfd) return;
      if (fd == m_timerfd) {
        ssize_t r = read(m_timerfd, &count, sizeof(count));
        (void)r;
        m_armed_ns = -1;  // fired: rearm_timer sets the next one
        run_timers();
        continue;
      }
      for (Irqfd& f : m_irqfds) {
        if (f.fd != fd) continue;
        if (read(f.fd, &count, sizeof(count)) != sizeof(count)) break;
        note_external_event();
        if (f.resamplefd >= 0) {
          // Level until the guest's EOI (on_eoi de-asserts and signals resamplefd).
          f.asserted = true;
          set_irq_locked(f.gsi, true, IrqSource::Resample);
        } else {
          set_irq_locked(f.gsi, true, IrqSource::User);  // irqfd_inject: a pulse
          set_irq_locked(f.gsi, false, IrqSource::User);
        }
        break;
      }
    }
    refresh();
  }
}

// ---- eventfd registration ----

int Irqchip::irqfd(int fd, uint32_t gsi, bool deassign, std::optional<int> resamplefd) {
  if (int r = check_eventfd(fd)) return r;
  std::lock_guard<std::mutex> g(m_lock);
  if (deassign) {
    // kvm_irqfd_deassign: 0 whether or not one matched.
    for (size_t i = 0; i < m_irqfds.size(); ++i) {
      if (m_irqfds[i].gsi != gsi || !same_open_file(m_irqfds[i].fd, fd)) continue;
      Irqfd f = m_irqfds[i];
      m_irqfds.erase(m_irqfds.begin() + long(i));
      epoll_ctl(m_epoll, EPOLL_CTL_DEL, f.fd, nullptr);
      if (f.asserted) set_irq_locked(f.gsi, false, IrqSource::Resample);
      close(f.fd);
      if (f.resamplefd >= 0) close(f.resamplefd);
      break;
    }
    refresh();
    return 0;
  }
  if (resamplefd) {
    if (int r = check_eventfd(*resamplefd)) return r;
  }
  for (const Irqfd& f : m_irqfds)
    if (same_open_file(f.fd, fd)) return -EBUSY;  // this eventfd already feeds a GSI
  Irqfd f;
  f.fd = fcntl(fd, F_DUPFD_CLOEXEC, 0);
  if (f.fd < 0) return -errno;
  f.gsi = gsi;
  if (resamplefd) f.resamplefd = fcntl(*resamplefd, F_DUPFD_CLOEXEC, 0);
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.fd = f.fd;
  if (epoll_ctl(m_epoll, EPOLL_CTL_ADD, f.fd, &ev) != 0) {
    int e = errno;
    close(f.fd);
    if (f.resamplefd >= 0) close(f.resamplefd);
    return -e;
  }
  m_irqfds.push_back(f);  // a count already in the eventfd is injected by the worker
  return 0;
}

}  // namespace anykvm::machine
