// 8259A pair: the priority resolver, the command words and the INTA cycle.
// Priorities: IR n has rank (n - priority_add) mod 8, rank 0 highest (8259A
// datasheet, "Rotation"). The cascade input IR2 of the master follows the
// slave's INT pin as a level: the slave holds INT until its INTA, so this is
// what the wire does, and the master's ISR2 blocks it until the master's EOI.
#include "devices/pic.h"

namespace anykvm::devices {

namespace {
constexpr uint8_t k_master_elcr_mask = 0xf8;  // IRQ0-2 are always edge (PIIX)
constexpr uint8_t k_slave_elcr_mask = 0xde;   // IRQ8 and IRQ13 are always edge
constexpr uint8_t k_poll_interrupt = 0x80;    // poll word: bit 7 = a request was pending
}  // namespace

Pic8259::Pic8259(bool master) : m_master(master) { reset(); }

void Pic8259::reset() {
  uint8_t elcr = m_s.elcr;
  m_s = PicChipState{};
  m_s.elcr_mask = m_master ? k_master_elcr_mask : k_slave_elcr_mask;
  m_s.elcr = elcr & m_s.elcr_mask;
  m_single = false;
}

void Pic8259::set_state(const PicChipState& s) {
  m_s = s;
  m_s.priority_add &= 7;
  m_single = false;
}

// The cascade pin of the master is a level input whatever the ELCR says.
uint8_t Pic8259::level_pins() const {
  return uint8_t(m_s.elcr | (m_master ? 1u << PicPair::k_cascade_pin : 0u));
}

int Pic8259::highest_priority(uint8_t mask) const {
  if (!mask) return -1;
  for (unsigned rank = 0; rank < 8; ++rank) {
    unsigned irq = (rank + m_s.priority_add) & 7;
    if (mask & (1u << irq)) return int(irq);
  }
  return -1;
}

int Pic8259::pending_irq() const {
  int irq = highest_priority(uint8_t(m_s.irr & ~m_s.imr));
  if (irq < 0) return -1;
  uint8_t in_service = m_s.isr;
  // Special mask mode: a masked in-service level no longer inhibits lower ones.
  if (m_s.special_mask) in_service &= uint8_t(~m_s.imr);
  int cur = highest_priority(in_service);
  if (cur < 0) return irq;
  unsigned rank_irq = (unsigned(irq) - m_s.priority_add) & 7;
  unsigned rank_cur = (unsigned(cur) - m_s.priority_add) & 7;
  if (rank_irq < rank_cur) return irq;
  // Special fully nested mode: the slave resolves its own priorities, so an
  // in-service cascade level does not block another request from the slave.
  if (m_master && m_s.special_fully_nested_mode && irq == cur && unsigned(irq) == PicPair::k_cascade_pin)
    return irq;
  return -1;
}

void Pic8259::acknowledge(unsigned irq) {
  uint8_t mask = uint8_t(1u << irq);
  if (m_s.auto_eoi) {
    // Auto-EOI: ISR is set at the first INTA and reset at the end of the second.
    if (m_s.rotate_on_auto_eoi) m_s.priority_add = uint8_t((irq + 1) & 7);
  } else {
    m_s.isr |= mask;
  }
  if (!(level_pins() & mask)) m_s.irr &= uint8_t(~mask);  // an edge request is consumed
}

IrqResult Pic8259::set_input(unsigned pin, bool level) {
  uint8_t mask = uint8_t(1u << (pin & 7));
  IrqResult r = IrqResult::Delivered;
  if (level_pins() & mask) {
    if (level)
      m_s.irr |= mask;
    else
      m_s.irr &= uint8_t(~mask);
  } else if (level && !(m_s.last_irr & mask)) {
    if (m_s.irr & mask) r = IrqResult::Coalesced;
    m_s.irr |= mask;
  }
  if (level)
    m_s.last_irr |= mask;
  else
    m_s.last_irr &= uint8_t(~mask);
  if (level && (m_s.imr & mask)) r = IrqResult::Masked;
  return r;
}

void Pic8259::write_elcr(uint8_t value) {
  m_s.elcr = value & m_s.elcr_mask;
  // A pin that became level-sensitive requests exactly while its line is high.
  uint8_t lv = level_pins();
  m_s.irr = uint8_t((m_s.irr & ~lv) | (m_s.last_irr & lv));
}

void Pic8259::write_icw1(uint8_t value) {
  // Datasheet "Initialization command words": IMR cleared, IR7 lowest priority,
  // special mask cleared, IRR selected for reads, edge sense reset (a line
  // already high must go low and high again), ICW4 functions zero if no IC4.
  m_s.imr = 0;
  m_s.isr = 0;
  m_s.irr = uint8_t(m_s.last_irr & level_pins());
  m_s.priority_add = 0;
  m_s.special_mask = 0;
  m_s.read_reg_select = 0;
  m_s.poll = 0;
  m_s.rotate_on_auto_eoi = 0;
  m_s.init4 = (value & bits(Icw1::Ic4)) ? 1 : 0;
  if (!m_s.init4) {
    m_s.auto_eoi = 0;
    m_s.special_fully_nested_mode = 0;
  }
  m_single = value & bits(Icw1::Single);
  m_s.init_state = bits(PicInitState::Icw2);
}

void Pic8259::write_ocw2(uint8_t value) {
  auto cmd = Ocw2Command(value >> 5);
  unsigned level = value & 7;
  switch (cmd) {
    case Ocw2Command::ClearRotateInAutoEoi:
    case Ocw2Command::SetRotateInAutoEoi:
      m_s.rotate_on_auto_eoi = cmd == Ocw2Command::SetRotateInAutoEoi;
      break;
    case Ocw2Command::NonSpecificEoi:
    case Ocw2Command::RotateOnNonSpecificEoi: {
      int irq = highest_priority(m_s.isr);
      if (irq < 0) break;
      m_s.isr &= uint8_t(~(1u << irq));
      if (cmd == Ocw2Command::RotateOnNonSpecificEoi) m_s.priority_add = uint8_t((irq + 1) & 7);
      break;
    }
    case Ocw2Command::SpecificEoi:
    case Ocw2Command::RotateOnSpecificEoi:
      m_s.isr &= uint8_t(~(1u << level));
      if (cmd == Ocw2Command::RotateOnSpecificEoi) m_s.priority_add = uint8_t((level + 1) & 7);
      break;
    case Ocw2Command::SetPriority:
      m_s.priority_add = uint8_t((level + 1) & 7);  // L becomes the lowest priority
      break;
    case Ocw2Command::NoOp:
      break;
  }
}

void Pic8259::write_ocw3(uint8_t value) {
  if (value & bits(Ocw3::Poll)) m_s.poll = 1;
  if (value & bits(Ocw3::ReadRegister)) m_s.read_reg_select = (value & bits(Ocw3::ReadIsr)) ? 1 : 0;
  if (value & bits(Ocw3::SetSpecialMask)) m_s.special_mask = (value & bits(Ocw3::SpecialMask)) ? 1 : 0;
}

void Pic8259::write(bool a0, uint8_t value) {
  if (!a0) {
    if (value & bits(Icw1::Init))
      write_icw1(value);
    else if (value & bits(Ocw3::Select))
      write_ocw3(value);
    else
      write_ocw2(value);
    return;
  }
  switch (PicInitState(m_s.init_state)) {
    case PicInitState::Ready:
      m_s.imr = value;  // OCW1
      break;
    case PicInitState::Icw2:
      m_s.irq_base = value & 0xf8;
      if (!m_single)
        m_s.init_state = bits(PicInitState::Icw3);
      else
        m_s.init_state = bits(m_s.init4 ? PicInitState::Icw4 : PicInitState::Ready);
      break;
    case PicInitState::Icw3:
      // The cascade wiring is fixed (slave on IR2); the word only moves the sequence on.
      m_s.init_state = bits(m_s.init4 ? PicInitState::Icw4 : PicInitState::Ready);
      break;
    case PicInitState::Icw4:
      m_s.auto_eoi = (value & bits(Icw4::AutoEoi)) ? 1 : 0;
      m_s.special_fully_nested_mode = (value & bits(Icw4::SpecialFullyNested)) ? 1 : 0;
      m_s.init_state = bits(PicInitState::Ready);
      break;
    default:
      m_s.init_state = bits(PicInitState::Ready);
      break;
  }
}

// A poll is an INTA without the vector: the read returns 0x80|level and the
// level goes in service; with nothing pending bit 7 is clear.
uint8_t Pic8259::poll_read() {
  m_s.poll = 0;
  int irq = pending_irq();
  if (irq < 0) return 0;
  acknowledge(unsigned(irq));
  return uint8_t(k_poll_interrupt | irq);
}

uint8_t Pic8259::read(bool a0) {
  if (m_s.poll) return poll_read();
  if (a0) return m_s.imr;
  return m_s.read_reg_select ? m_s.isr : m_s.irr;
}

// ---- the pair ----

PicPair::PicPair() : m_chips{Pic8259(true), Pic8259(false)} {}

bool PicPair::handles_port(Port port) {
  switch (port.raw()) {
    case k_master_command:
    case k_master_data:
    case k_slave_command:
    case k_slave_data:
    case k_elcr_master:
    case k_elcr_slave:
      return true;
    default:
      return false;
  }
}

uint8_t PicPair::read_port(Port port) {
  uint8_t v = 0xff;
  switch (port.raw()) {
    case k_master_command:
    case k_master_data:
      v = chip(Chip::Master).read(port.raw() & 1);
      break;
    case k_slave_command:
    case k_slave_data:
      v = chip(Chip::Slave).read(port.raw() & 1);
      break;
    case k_elcr_master:
      v = chip(Chip::Master).read_elcr();
      break;
    case k_elcr_slave:
      v = chip(Chip::Slave).read_elcr();
      break;
  }
  update();  // a poll read acknowledges
  return v;
}

void PicPair::write_port(Port port, uint8_t value) {
  switch (port.raw()) {
    case k_master_command:
    case k_master_data:
      chip(Chip::Master).write(port.raw() & 1, value);
      break;
    case k_slave_command:
    case k_slave_data:
      chip(Chip::Slave).write(port.raw() & 1, value);
      break;
    case k_elcr_master:
      chip(Chip::Master).write_elcr(value);
      break;
    case k_elcr_slave:
      chip(Chip::Slave).write_elcr(value);
      break;
  }
  update();
}

IrqResult PicPair::set_irq(unsigned irq, bool level) {
  if (irq >= 16 || irq == k_cascade_pin) return IrqResult::Masked;
  IrqResult r = chip(irq < 8 ? Chip::Master : Chip::Slave).set_input(irq & 7, level);
  update();
  return r;
}

bool PicPair::has_interrupt() const { return m_chips[0].pending_irq() >= 0; }

Vector PicPair::acknowledge() {
  Pic8259& master = chip(Chip::Master);
  Pic8259& slave = chip(Chip::Slave);
  uint8_t vector;
  int irq = master.pending_irq();
  if (irq < 0) {
    vector = uint8_t(master.state().irq_base | 7);  // spurious IRQ7: nothing goes in service
  } else {
    master.acknowledge(unsigned(irq));
    if (unsigned(irq) == k_cascade_pin) {
      int sirq = slave.pending_irq();
      if (sirq < 0) {
        vector = uint8_t(slave.state().irq_base | 7);  // spurious IRQ15
      } else {
        slave.acknowledge(unsigned(sirq));
        vector = uint8_t(slave.state().irq_base + sirq);
      }
    } else {
      vector = uint8_t(master.state().irq_base + irq);
    }
  }
  update();
  return Vector(vector);
}

void PicPair::update() {
  chip(Chip::Master).set_input(k_cascade_pin, chip(Chip::Slave).pending_irq() >= 0);
  bool level = has_interrupt();
  if (level != m_output_level) {
    m_output_level = level;
    if (m_output) m_output->set_level(level);
  }
}

PicChipState PicPair::get_state(Chip c) const { return m_chips[unsigned(c)].state(); }

void PicPair::set_state(Chip c, const PicChipState& s) {
  chip(c).set_state(s);
  update();
}

void PicPair::reset() {
  m_chips[0].reset();
  m_chips[1].reset();
  update();
}

}  // namespace anykvm::devices
