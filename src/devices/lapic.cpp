// Local APIC: register page, priorities, EOI, IPIs, destination matching and
// the IA32_APIC_BASE mode transitions. The x2APIC MSR rules are in
// lapic_x2apic.cpp, the timer in lapic_timer.cpp.
#include "devices/lapic.h"

#include <cstring>

namespace anykvm::devices {

namespace {
constexpr uint32_t k_svr_writable =
    bits(Svr::VectorMask) | bits(Svr::SoftwareEnable) | bits(Svr::FocusCheckDisable);
constexpr uint32_t k_xapic_id_mask = 0xff000000;
constexpr uint32_t k_dfr_reserved_ones = 0x0fffffff;
constexpr unsigned k_first_legal_vector = 16;  // vectors 0-15 are illegal for fixed delivery (SDM 10.5.3)
constexpr ApicReg k_lvts[] = {ApicReg::LvtTimer, ApicReg::LvtThermal, ApicReg::LvtPerf,
                              ApicReg::LvtLint0, ApicReg::LvtLint1,   ApicReg::LvtError};

uint8_t priority_class(int v) { return v < 0 ? 0 : uint8_t(v & 0xf0); }
}  // namespace

Lapic::Lapic(VcpuId id, const Clock& clock, ApicBus& bus) : m_vcpu_id(id), m_clock(clock), m_bus(bus) {
  reset(id.raw() == 0);
}

// ---- 256-bit IRR/ISR/TMR ----

bool Lapic::vec_bit(ApicReg base, unsigned v) const {
  return m_regs[(uint32_t(base) + (v / 32) * 0x10) >> 2] & (1u << (v % 32));
}

void Lapic::set_vec_bit(ApicReg base, unsigned v, bool on) {
  uint32_t& r = reg_at(uint32_t(base) + (v / 32) * 0x10);
  if (on)
    r |= 1u << (v % 32);
  else
    r &= ~(1u << (v % 32));
}

int Lapic::highest_vec(ApicReg base) const {
  for (int i = 7; i >= 0; --i) {
    uint32_t r = m_regs[(uint32_t(base) + unsigned(i) * 0x10) >> 2];
    if (r) return i * 32 + 31 - __builtin_clz(r);
  }
  return -1;
}

// ---- reset, INIT, mode ----

void Lapic::reset_registers() {
  uint32_t id = reg(ApicReg::Id);
  std::memset(m_regs, 0, sizeof m_regs);
  reg(ApicReg::Id) = id;
  reg(ApicReg::Version) = k_apic_version_reg;
  reg(ApicReg::Dfr) = 0xffffffff;
  reg(ApicReg::Svr) = 0xff;
  for (ApicReg r : k_lvts) reg(r) = bits(Lvt::Masked);
  if (x2apic_mode()) set_x2apic_id_and_ldr();
  m_esr_pending = 0;
  m_tsc_deadline = 0;
  stop_timer();
  update_ppr();
}

void Lapic::reset(bool bsp) {
  m_apic_base = k_apic_default_base | bits(ApicBaseBits::Enable) | (bsp ? bits(ApicBaseBits::Bsp) : 0);
  reg(ApicReg::Id) = m_vcpu_id.raw() << k_xapic_dest_shift;
  reset_registers();
  m_events = 0;
  m_sipi_vector = 0;
  m_lint_level = 0;
}

void Lapic::init() { reset_registers(); }

uint32_t Lapic::apic_id() const {
  return x2apic_mode() ? reg(ApicReg::Id) : reg(ApicReg::Id) >> k_xapic_dest_shift;
}

// x2APIC: the ID is the vCPU's and read-only; the LDR is derived from it
// (SDM 10.12.10.2: cluster = ID[19:4], bit ID[3:0] within the cluster).
void Lapic::set_x2apic_id_and_ldr() {
  uint32_t id = m_vcpu_id.raw();
  reg(ApicReg::Id) = id;
  reg(ApicReg::Ldr) = ((id >> 4) << 16) | (1u << (id & 0xf));
}

bool Lapic::set_apic_base(uint64_t value, bool host) {
  constexpr uint64_t valid = k_apic_base_address_mask | bits(ApicBaseBits::Bsp) | bits(ApicBaseBits::X2apic) |
                             bits(ApicBaseBits::Enable);
  if (value & ~valid) return false;
  bool new_en = value & bits(ApicBaseBits::Enable), new_x2 = value & bits(ApicBaseBits::X2apic);
  bool old_en = hw_enabled(), old_x2 = x2apic_mode();
  if (new_x2 && !new_en) return false;  // EXTD without EN is invalid
  // SDM 10.12.5 figure 10-27: x2APIC -> xAPIC and disabled -> x2APIC are invalid.
  if (!host && ((old_x2 && new_en && !new_x2) || (!old_en && new_x2))) return false;
  m_apic_base = value;
  if (!new_en) {
    if (old_en) {  // a disabled APIC comes back in its reset state
      reg(ApicReg::Id) = m_vcpu_id.raw() << k_xapic_dest_shift;
      reset_registers();
    }
  } else if (new_x2 && !old_x2) {
    set_x2apic_id_and_ldr();
  } else if (!new_x2 && old_x2) {
    reg(ApicReg::Id) = m_vcpu_id.raw() << k_xapic_dest_shift;
    reg(ApicReg::Ldr) = 0;
  }
  return true;
}

// ---- priorities (SDM 10.8.3.1, 10.6.2.4) ----

void Lapic::update_ppr() {
  uint32_t tpr = reg(ApicReg::Tpr) & 0xff;
  uint8_t isrv = priority_class(highest_vec(ApicReg::Isr));
  reg(ApicReg::Ppr) = (tpr & 0xf0) >= isrv ? tpr : isrv;
}

uint8_t Lapic::arbitration_priority() const {
  uint8_t tpr = uint8_t(reg(ApicReg::Tpr));
  uint8_t isrv = priority_class(highest_vec(ApicReg::Isr));
  uint8_t irrv = priority_class(highest_vec(ApicReg::Irr));
  if ((tpr & 0xf0) >= irrv && (tpr & 0xf0) > isrv) return tpr;
  uint8_t m = uint8_t(tpr & 0xf0);
  if (isrv > m) m = isrv;
  if (irrv > m) m = irrv;
  return m;
}

void Lapic::set_cr8(uint8_t value) {
  reg(ApicReg::Tpr) = uint32_t(value & 0xf) << 4;
  update_ppr();
}

// ---- accepting and delivering ----

void Lapic::report_error(Esr e) {
  bool fresh = !(m_esr_pending & bits(e));
  m_esr_pending |= bits(e);
  // The error LVT fires on a new error; the guard also ends the recursion of an
  // illegal vector programmed into the error LVT itself.
  if (fresh && !lvt_masked(ApicReg::LvtError)) deliver_lvt(ApicReg::LvtError);
}

bool Lapic::accept_interrupt(Vector vector, TriggerMode trigger) {
  unsigned v = vector.raw();
  if (v < k_first_legal_vector) {
    report_error(Esr::ReceiveIllegalVector);
    return false;
  }
  bool was = vec_bit(ApicReg::Irr, v);
  set_vec_bit(ApicReg::Irr, v, true);
  set_vec_bit(ApicReg::Tmr, v, trigger == TriggerMode::Level);
  return !was;
}

bool Lapic::accept(const ApicMessage& msg) {
  switch (msg.delivery_mode) {
    case DeliveryMode::Fixed:
    case DeliveryMode::LowestPriority:
      if (!sw_enabled()) return false;  // a software-disabled APIC takes only NMI/SMI/INIT/SIPI
      return accept_interrupt(msg.vector, msg.trigger);
    case DeliveryMode::Smi:
      m_events |= bits(LapicEvent::Smi);
      return true;
    case DeliveryMode::Nmi:
      m_events |= bits(LapicEvent::Nmi);
      return true;
    case DeliveryMode::Init:
      if (!msg.level_assert && msg.trigger == TriggerMode::Level) return false;  // INIT de-assert
      m_events |= bits(LapicEvent::Init);
      return true;
    case DeliveryMode::StartUp:
      m_events |= bits(LapicEvent::StartUp);
      m_sipi_vector = msg.vector.raw();
      return true;
    case DeliveryMode::ExtInt:
      m_events |= bits(LapicEvent::ExtInt);
      return true;
  }
  return false;
}

bool Lapic::take_event(LapicEvent e) {
  bool was = m_events & bits(e);
  m_events &= uint8_t(~bits(e));
  return was;
}

bool Lapic::matches(const ApicMessage& msg, const Lapic* source) const {
  if (!hw_enabled()) return false;
  switch (msg.shorthand) {
    case DestShorthand::Self:
      return this == source;
    case DestShorthand::AllIncludingSelf:
      return true;
    case DestShorthand::AllExcludingSelf:
      return this != source;
    case DestShorthand::None:
      break;
  }
  uint32_t broadcast = msg.x2apic_dest ? 0xffffffffu : 0xffu;
  if (msg.dest == broadcast) return true;
  if (msg.dest_mode == DestMode::Physical) return msg.dest == apic_id();
  if (x2apic_mode()) {
    uint32_t ldr = reg(ApicReg::Ldr);
    // An 8-bit logical destination (IOAPIC, MSI) names cluster 0.
    uint32_t dest = msg.x2apic_dest ? msg.dest : (msg.dest & 0xff);
    return (dest >> 16) == (ldr >> 16) && (dest & ldr & 0xffff);
  }
  uint32_t ldr8 = reg(ApicReg::Ldr) >> k_xapic_dest_shift, d8 = msg.dest & 0xff;
  if (DfrModel(reg(ApicReg::Dfr) >> 28) == DfrModel::Flat) return ldr8 & d8;
  return (ldr8 >> 4) == (d8 >> 4) && (ldr8 & d8 & 0xf);  // cluster model
}

void Lapic::deliver_lvt(ApicReg r) {
  uint32_t lvt = reg(r);
  if (lvt & bits(Lvt::Masked)) return;
  Vector vector(uint8_t(lvt & bits(Lvt::VectorMask)));
  // Timer and error LVTs have no delivery mode field: always fixed.
  auto dm = (r == ApicReg::LvtTimer || r == ApicReg::LvtError)
                ? DeliveryMode::Fixed
                : DeliveryMode((lvt & bits(Lvt::DeliveryModeMask)) >> k_delivery_mode_shift);
  bool level = (r == ApicReg::LvtLint0 || r == ApicReg::LvtLint1) && (lvt & bits(Lvt::TriggerLevel));
  switch (dm) {
    case DeliveryMode::Fixed:
      accept_interrupt(vector, level ? TriggerMode::Level : TriggerMode::Edge);
      break;
    case DeliveryMode::Nmi:
      m_events |= bits(LapicEvent::Nmi);
      break;
    case DeliveryMode::Smi:
      m_events |= bits(LapicEvent::Smi);
      break;
    case DeliveryMode::Init:
      m_events |= bits(LapicEvent::Init);
      break;
    case DeliveryMode::ExtInt:
      m_events |= bits(LapicEvent::ExtInt);
      break;
    default:
      break;
  }
}

void Lapic::set_lint(unsigned pin, bool level) {
  ApicReg r = pin ? ApicReg::LvtLint1 : ApicReg::LvtLint0;
  uint8_t bit = uint8_t(1u << (pin & 1));
  bool rising = level && !(m_lint_level & bit);
  m_lint_level = level ? uint8_t(m_lint_level | bit) : uint8_t(m_lint_level & ~bit);
  uint32_t lvt = reg(r);
  if (lvt & bits(Lvt::Masked)) return;
  if (DeliveryMode((lvt & bits(Lvt::DeliveryModeMask)) >> k_delivery_mode_shift) == DeliveryMode::ExtInt) {
    // Virtual wire: the PIC's INT is a level the vCPU samples.
    if (level)
      m_events |= bits(LapicEvent::ExtInt);
    else
      m_events &= uint8_t(~bits(LapicEvent::ExtInt));
    return;
  }
  if (rising) deliver_lvt(r);
}

bool Lapic::accepts_pic_interrupts() const {
  if (!hw_enabled()) return true;
  uint32_t lvt0 = reg(ApicReg::LvtLint0);
  return !(lvt0 & bits(Lvt::Masked)) &&
         DeliveryMode((lvt0 & bits(Lvt::DeliveryModeMask)) >> k_delivery_mode_shift) == DeliveryMode::ExtInt;
}

std::optional<Vector> Lapic::has_interrupt() {
  update();
  if (!hw_enabled()) return std::nullopt;
  int v = highest_vec(ApicReg::Irr);
  if (v < 0 || priority_class(v) <= (reg(ApicReg::Ppr) & 0xf0)) return std::nullopt;
  return Vector(uint8_t(v));
}

Vector Lapic::acknowledge() {
  auto v = has_interrupt();
  if (!v) return Vector(uint8_t(reg(ApicReg::Svr) & bits(Svr::VectorMask)));  // spurious: ISR untouched
  set_vec_bit(ApicReg::Irr, v->raw(), false);
  set_vec_bit(ApicReg::Isr, v->raw(), true);
  update_ppr();
  return *v;
}

void Lapic::do_eoi() {
  int v = highest_vec(ApicReg::Isr);
  if (v < 0) return;
  set_vec_bit(ApicReg::Isr, unsigned(v), false);
  update_ppr();
  if (vec_bit(ApicReg::Tmr, unsigned(v)))
    m_bus.broadcast_eoi(Vector(uint8_t(v)));
  else
    m_bus.edge_eoi(Vector(uint8_t(v)));
}

void Lapic::send_ipi() {
  uint32_t low = reg(ApicReg::IcrLow);
  ApicMessage msg;
  msg.vector = Vector(uint8_t(low & bits(IcrBits::VectorMask)));
  msg.delivery_mode = DeliveryMode((low & bits(IcrBits::DeliveryModeMask)) >> k_delivery_mode_shift);
  msg.dest_mode = (low & bits(IcrBits::DestLogical)) ? DestMode::Logical : DestMode::Physical;
  msg.level_assert = low & bits(IcrBits::LevelAssert);
  msg.trigger = (low & bits(IcrBits::TriggerLevel)) ? TriggerMode::Level : TriggerMode::Edge;
  msg.shorthand = DestShorthand((low & bits(IcrBits::ShorthandMask)) >> k_icr_shorthand_shift);
  msg.x2apic_dest = x2apic_mode();
  msg.dest = x2apic_mode() ? reg(ApicReg::IcrHigh) : reg(ApicReg::IcrHigh) >> k_xapic_dest_shift;
  // INIT level de-assert only synchronised arbitration IDs; P4 and later ignore it.
  if (msg.delivery_mode == DeliveryMode::Init && !msg.level_assert && msg.trigger == TriggerMode::Level)
    return;
  if ((msg.delivery_mode == DeliveryMode::Fixed || msg.delivery_mode == DeliveryMode::LowestPriority) &&
      msg.vector.raw() < k_first_legal_vector) {
    report_error(Esr::SendIllegalVector);
    return;
  }
  m_bus.deliver(msg, this);
}

// ---- registers common to both interfaces ----

bool Lapic::read_reg(uint32_t offset, uint32_t& value) {
  if (offset >= uint32_t(ApicReg::Isr) && offset < uint32_t(ApicReg::Esr)) {  // ISR, TMR, IRR
    value = reg_at(offset);
    return true;
  }
  switch (ApicReg(offset)) {
    case ApicReg::Id:
    case ApicReg::Version:
    case ApicReg::Tpr:
    case ApicReg::Ppr:
    case ApicReg::Ldr:
    case ApicReg::Dfr:
    case ApicReg::Svr:
    case ApicReg::Esr:
    case ApicReg::IcrLow:
    case ApicReg::IcrHigh:
    case ApicReg::LvtTimer:
    case ApicReg::LvtThermal:
    case ApicReg::LvtPerf:
    case ApicReg::LvtLint0:
    case ApicReg::LvtLint1:
    case ApicReg::LvtError:
    case ApicReg::TimerInitialCount:
    case ApicReg::TimerDivide:
      value = reg_at(offset);
      return true;
    case ApicReg::Apr:
      value = arbitration_priority();
      return true;
    case ApicReg::Eoi:
    case ApicReg::RemoteRead:
      value = 0;
      return true;
    case ApicReg::TimerCurrentCount:
      value = current_count();
      return true;
    default:
      return false;
  }
}

void Lapic::write_lvt(ApicReg r, uint32_t value) {
  uint32_t writable = k_lvt_error_bits;
  switch (r) {
    case ApicReg::LvtTimer:  // the mode bits the guest's CPUID allows (Linux's timer_mode_mask)
      writable = (k_lvt_timer_bits & ~bits(Lvt::TimerModeMask)) | m_timer_mode_mask.load(std::memory_order_relaxed);
      break;
    case ApicReg::LvtThermal:
    case ApicReg::LvtPerf:
      writable = k_lvt_thermal_perf_bits;
      break;
    case ApicReg::LvtLint0:
    case ApicReg::LvtLint1:
      writable = k_lvt_lint_bits;
      break;
    default:
      break;
  }
  // SDM 10.4.7.2: while software-disabled the mask bits cannot be cleared.
  if (!sw_enabled()) value |= bits(Lvt::Masked);
  if (r != ApicReg::LvtTimer) {
    reg(r) = (value & writable) | (reg(r) & bits(Lvt::RemoteIrr));
    return;
  }
  update();  // a timer that expired under the old mask is settled under it
  TimerMode old_mode = timer_mode();
  reg(r) = value & writable;
  // SDM 10.5.4.1: changing the timer mode disarms the timer. As KVM, only a
  // change into or out of TSC-deadline does; one-shot <-> periodic carries on.
  if ((timer_mode() == TimerMode::TscDeadline) != (old_mode == TimerMode::TscDeadline)) {
    stop_timer();
    reg(ApicReg::TimerInitialCount) = 0;
    m_tsc_deadline = 0;
  }
}

void Lapic::write_reg(uint32_t offset, uint32_t value) {
  switch (ApicReg(offset)) {
    case ApicReg::Id:
      if (!x2apic_mode()) reg(ApicReg::Id) = value & k_xapic_id_mask;
      break;
    case ApicReg::Tpr:
      reg(ApicReg::Tpr) = value & 0xff;
      update_ppr();
      break;
    case ApicReg::Eoi:
      do_eoi();
      break;
    case ApicReg::Ldr:
      if (!x2apic_mode()) reg(ApicReg::Ldr) = value & k_xapic_id_mask;
      break;
    case ApicReg::Dfr:
      if (!x2apic_mode()) reg(ApicReg::Dfr) = value | k_dfr_reserved_ones;
      break;
    case ApicReg::Svr:
      reg(ApicReg::Svr) = value & k_svr_writable;
      if (!(value & bits(Svr::SoftwareEnable)))
        for (ApicReg r : k_lvts) reg(r) |= bits(Lvt::Masked);
      break;
    case ApicReg::Esr:  // the write latches the errors seen since the previous write
      reg(ApicReg::Esr) = m_esr_pending;
      m_esr_pending = 0;
      break;
    case ApicReg::IcrLow:
      reg(ApicReg::IcrLow) = value & k_icr_low_bits;
      send_ipi();
      break;
    case ApicReg::IcrHigh:
      if (!x2apic_mode()) reg(ApicReg::IcrHigh) = value & k_xapic_id_mask;
      break;
    case ApicReg::LvtTimer:
    case ApicReg::LvtThermal:
    case ApicReg::LvtPerf:
    case ApicReg::LvtLint0:
    case ApicReg::LvtLint1:
    case ApicReg::LvtError:
      write_lvt(ApicReg(offset), value);
      break;
    case ApicReg::TimerInitialCount:
      if (timer_mode() == TimerMode::TscDeadline) break;  // ignored in TSC-deadline mode
      reg(ApicReg::TimerInitialCount) = value;
      if (value)
        start_timer(value);
      else
        stop_timer();
      break;
    case ApicReg::TimerDivide: {
      uint32_t count = current_count();
      reg(ApicReg::TimerDivide) = value & k_divide_bits;
      if (m_timer_armed && count) start_timer(count);  // carry on from the same count
      break;
    }
    default:
      break;
  }
}

// ---- xAPIC MMIO ----

uint32_t Lapic::mmio_read(uint32_t offset, unsigned len) {
  offset &= 0xfff;
  unsigned align = offset & 0xf;
  if (len == 0 || len > 4 || align + len > 4) return 0;
  uint32_t value = 0;
  uint32_t r = offset & ~0xfu;
  if (r >= k_lapic_state_size || !read_reg(r, value)) {
    report_error(Esr::IllegalRegister);
    return 0;
  }
  value >>= align * 8;
  return len == 4 ? value : value & ((1u << (len * 8)) - 1);
}

void Lapic::mmio_write(uint32_t offset, uint32_t value, unsigned len) {
  offset &= 0xfff;
  // Registers are written as whole aligned dwords; anything else is dropped (as KVM).
  if (len != 4 || (offset & 0xf)) return;
  switch (ApicReg(offset)) {
    case ApicReg::Version:
    case ApicReg::Apr:
    case ApicReg::Ppr:
    case ApicReg::RemoteRead:
    case ApicReg::TimerCurrentCount:
      return;  // read-only
    default:
      break;
  }
  if (offset >= uint32_t(ApicReg::Isr) && offset < uint32_t(ApicReg::Esr)) return;  // read-only
  uint32_t dummy;
  if (offset >= k_lapic_state_size || !read_reg(offset, dummy)) {
    report_error(Esr::IllegalRegister);
    return;
  }
  write_reg(offset, value);
}

// ---- state ----

LapicState Lapic::get_state() const {
  LapicState s;
  std::memcpy(s.regs, m_regs, sizeof s.regs);
  uint32_t count = current_count();
  std::memcpy(s.regs + uint32_t(ApicReg::TimerCurrentCount), &count, 4);
  if (x2apic_mode() && !m_x2apic_format) {
    uint32_t id = reg(ApicReg::Id) << k_xapic_dest_shift;
    std::memcpy(s.regs + uint32_t(ApicReg::Id), &id, 4);
  }
  return s;
}

void Lapic::set_state(const LapicState& s) {
  std::memcpy(m_regs, s.regs, sizeof m_regs);
  uint32_t saved_count = reg(ApicReg::TimerCurrentCount);
  reg(ApicReg::TimerCurrentCount) = 0;  // computed on read
  reg(ApicReg::Version) = k_apic_version_reg;
  if (x2apic_mode()) {
    if (!m_x2apic_format) reg(ApicReg::Id) >>= k_xapic_dest_shift;
    reg(ApicReg::Ldr) = ((reg(ApicReg::Id) >> 4) << 16) | (1u << (reg(ApicReg::Id) & 0xf));
  }
  update_ppr();
  stop_timer();
  uint32_t initial = reg(ApicReg::TimerInitialCount);
  TimerMode mode = timer_mode();
  if (mode != TimerMode::TscDeadline && initial) {
    if (saved_count > initial || (mode == TimerMode::Periodic && saved_count == 0)) saved_count = initial;
    if (saved_count) start_timer(saved_count);
  }
}

}  // namespace anykvm::devices
