// 82093AA I/O APIC: indirect register access, redirection, remote IRR and EOI.
#include "devices/ioapic.h"

namespace anykvm::devices {

namespace {
constexpr uint64_t k_redir_read_only = bits(Redir::DeliveryStatus) | bits(Redir::RemoteIrr);
constexpr uint32_t k_max_redir_shift = 16;  // version register bits 23:16: last entry index

bool is_level(uint64_t e) { return e & bits(Redir::TriggerLevel); }
bool is_masked(uint64_t e) { return e & bits(Redir::Masked); }
}  // namespace

Ioapic::Ioapic(ApicBus& bus) : m_bus(bus) { reset(); }

void Ioapic::reset() {
  m_s = IoapicState{};
  m_s.base_address = k_ioapic_default_base;
  for (auto& e : m_s.redirtbl) e = bits(Redir::Masked);
  m_line = 0;
}

void Ioapic::set_state(const IoapicState& s) {
  m_s = s;
  m_s.pad = 0;
  m_line = 0;
  for (unsigned pin = 0; pin < k_ioapic_pins; ++pin)
    if (is_level(m_s.redirtbl[pin])) m_line |= m_s.irr & (1u << pin);
}

uint32_t Ioapic::read_indirect() const {
  uint32_t sel = m_s.ioregsel;
  switch (IoapicReg(sel)) {
    case IoapicReg::Id:
    case IoapicReg::Arbitration:
      return (m_s.id & 0xf) << 24;
    case IoapicReg::Version:
      return k_ioapic_version | ((k_ioapic_pins - 1) << k_max_redir_shift);
    default:
      break;
  }
  if (sel >= bits(IoapicReg::RedirBase) && sel < bits(IoapicReg::RedirBase) + 2 * k_ioapic_pins) {
    uint64_t e = m_s.redirtbl[(sel - bits(IoapicReg::RedirBase)) / 2];
    return (sel & 1) ? uint32_t(e >> 32) : uint32_t(e);
  }
  return 0;
}

void Ioapic::write_indirect(uint32_t value) {
  uint32_t sel = m_s.ioregsel;
  if (sel == bits(IoapicReg::Id)) {
    m_s.id = (value >> 24) & 0xf;
    return;
  }
  if (sel < bits(IoapicReg::RedirBase) || sel >= bits(IoapicReg::RedirBase) + 2 * k_ioapic_pins) return;
  unsigned pin = (sel - bits(IoapicReg::RedirBase)) / 2;
  uint64_t& e = m_s.redirtbl[pin];
  bool was_masked = is_masked(e);
  if (sel & 1) {
    e = (e & 0xffffffffull) | (uint64_t(value) << 32);
    return;
  }
  e = (e & ~0xffffffffull) | (value & ~k_redir_read_only) | (e & k_redir_read_only);
  // An edge pin has no EOI to wait for (KVM clears a stale remote IRR the same way).
  if (!is_level(e)) e &= ~bits(Redir::RemoteIrr);
  // Unmasking a level pin whose line is still asserted delivers it now.
  if (was_masked && !is_masked(e) && is_level(e) && (m_s.irr & (1u << pin))) service(pin);
}

uint32_t Ioapic::mmio_read(uint32_t offset, unsigned len) {
  uint32_t v = 0;
  switch (IoapicMmio(offset & 0xff)) {
    case IoapicMmio::RegSelect:
      v = m_s.ioregsel;
      break;
    case IoapicMmio::Window:
      v = read_indirect();
      break;
    default:
      break;
  }
  if (len == 1) return v & 0xff;
  if (len == 2) return v & 0xffff;
  return v;
}

void Ioapic::mmio_write(uint32_t offset, uint32_t value, unsigned len) {
  if (len == 1)
    value &= 0xff;
  else if (len == 2)
    value &= 0xffff;
  switch (IoapicMmio(offset & 0xff)) {
    case IoapicMmio::RegSelect:
      m_s.ioregsel = value & 0xff;
      break;
    case IoapicMmio::Window:
      write_indirect(value);
      break;
    case IoapicMmio::Eoi:
      eoi(Vector(uint8_t(value)));
      break;
  }
}

IrqResult Ioapic::service(unsigned pin) {
  uint64_t& e = m_s.redirtbl[pin];
  if (is_masked(e)) return IrqResult::Masked;
  if (is_level(e) && (e & bits(Redir::RemoteIrr))) return IrqResult::Coalesced;
  ApicMessage msg;
  msg.dest = uint32_t(e >> k_redir_dest_shift);
  msg.dest_mode = (e & bits(Redir::DestLogical)) ? DestMode::Logical : DestMode::Physical;
  msg.delivery_mode = DeliveryMode((e & bits(Redir::DeliveryModeMask)) >> k_delivery_mode_shift);
  msg.vector = Vector(uint8_t(e & bits(Redir::VectorMask)));
  msg.trigger = is_level(e) ? TriggerMode::Level : TriggerMode::Edge;
  int n = m_bus.deliver(msg, nullptr);
  if (!is_level(e))
    m_s.irr &= ~(1u << pin);
  else if (n > 0)
    e |= bits(Redir::RemoteIrr);
  return n > 0 ? IrqResult::Delivered : IrqResult::Coalesced;
}

IrqResult Ioapic::set_irq(unsigned pin, bool level) {
  if (pin >= k_ioapic_pins) return IrqResult::Masked;
  uint32_t mask = 1u << pin;
  bool rising = level && !(m_line & mask);
  if (level)
    m_line |= mask;
  else
    m_line &= ~mask;
  uint64_t e = m_s.redirtbl[pin];
  if (is_level(e)) {
    if (!level) {
      m_s.irr &= ~mask;
      return IrqResult::Delivered;
    }
    m_s.irr |= mask;
    return service(pin);
  }
  if (!level) return IrqResult::Delivered;
  if (!rising) return IrqResult::Coalesced;
  if (is_masked(e)) return IrqResult::Masked;
  m_s.irr |= mask;
  return service(pin);
}

void Ioapic::eoi(Vector vector) {
  for (unsigned pin = 0; pin < k_ioapic_pins; ++pin) {
    uint64_t& e = m_s.redirtbl[pin];
    if ((e & bits(Redir::VectorMask)) != vector.raw() || !is_level(e) || !(e & bits(Redir::RemoteIrr)))
      continue;
    e &= ~bits(Redir::RemoteIrr);
    if (m_s.irr & (1u << pin)) service(pin);
  }
}

}  // namespace anykvm::devices
