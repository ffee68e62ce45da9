// ApicRouter: destination matching over the registered LAPICs, and the
// lowest-priority arbitration (SDM vol. 3 10.6.2.4).
#include "devices/apic_bus.h"

#include "devices/edges.h"
#include "devices/lapic.h"

namespace anykvm::devices {

ApicMessage msi_message(uint64_t address, uint32_t data, bool x2apic_ext_dest) {
  ApicMessage m;
  m.dest = uint32_t((address & bits(MsiAddress::DestIdMask)) >> k_msi_dest_id_shift);
  if (x2apic_ext_dest) m.dest |= uint32_t(address >> 32) & k_msi_ext_dest_mask;
  m.x2apic_dest = m.dest > 0xff;
  m.dest_mode = (address & bits(MsiAddress::DestLogical)) ? DestMode::Logical : DestMode::Physical;
  m.delivery_mode = DeliveryMode((data & bits(MsiData::DeliveryModeMask)) >> k_delivery_mode_shift);
  m.vector = Vector(uint8_t(data & bits(MsiData::VectorMask)));
  m.trigger = (data & bits(MsiData::TriggerLevel)) ? TriggerMode::Level : TriggerMode::Edge;
  m.level_assert = data & bits(MsiData::LevelAssert);
  return m;
}

int ApicRouter::deliver(const ApicMessage& msg, Lapic* source) {
  bool lowest = msg.delivery_mode == DeliveryMode::LowestPriority && msg.shorthand == DestShorthand::None;
  Lapic* best = nullptr;
  int matched = 0, accepted = 0;
  for (Lapic* l : m_lapics) {
    if (!l->matches(msg, source)) continue;
    ++matched;
    if (lowest) {
      if (!best || l->arbitration_priority() < best->arbitration_priority()) best = l;
      continue;
    }
    if (l->accept(msg)) {
      ++accepted;
      if (m_accepted) m_accepted(*l);
    }
  }
  if (best && best->accept(msg)) {
    ++accepted;
    if (m_accepted) m_accepted(*best);
  }
  return matched ? accepted : -1;
}

}  // namespace anykvm::devices
