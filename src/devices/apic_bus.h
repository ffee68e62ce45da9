// The APIC bus (really the system bus messages of the xAPIC architecture; SDM
// vol. 3 10.6 "Issuing interprocessor interrupts" and 10.11 "Message signalled
// interrupts"): what an IOAPIC redirection entry, an MSI or a LAPIC's ICR puts
// on the wire, and the EOI broadcast back from a LAPIC to the IOAPICs.
// ApicBus is the injected edge; ApicRouter is a plain implementation that
// matches destinations over a set of Lapics (tests and, if it fits, machine/).
#pragma once
#include <cstdint>
#include <functional>
#include <vector>

#include "base/types.h"

namespace anykvm::devices {

class Lapic;

// ICR bits 10:8, IOAPIC redirection bits 10:8, MSI data bits 10:8.
enum class DeliveryMode : uint8_t {
  Fixed = 0,
  LowestPriority = 1,
  Smi = 2,
  Nmi = 4,
  Init = 5,
  StartUp = 6,
  ExtInt = 7,
};

constexpr unsigned k_delivery_mode_shift = 8;

enum class DestMode : uint8_t { Physical = 0, Logical = 1 };
enum class TriggerMode : uint8_t { Edge = 0, Level = 1 };

// ICR bits 19:18.
enum class DestShorthand : uint8_t { None = 0, Self = 1, AllIncludingSelf = 2, AllExcludingSelf = 3 };

struct ApicMessage {
  // xAPIC format: 8 bits (0xff broadcast); x2APIC format: 32 bits (0xffffffff).
  uint32_t dest = 0;
  DestMode dest_mode = DestMode::Physical;
  DeliveryMode delivery_mode = DeliveryMode::Fixed;
  Vector vector{};
  TriggerMode trigger = TriggerMode::Edge;
  bool level_assert = true;  // ICR bit 14; only INIT de-assert clears it
  DestShorthand shorthand = DestShorthand::None;
  bool x2apic_dest = false;  // dest is a 32-bit x2APIC destination
};

// MSI address and data (SDM vol. 3, 10.11.1 and 10.11.2).
enum class MsiAddress : uint32_t {
  DestLogical = 0x4,      // DM
  RedirectionHint = 0x8,  // RH: lowest priority among the destinations
  DestIdMask = 0xff000,   // bits 19:12
};
constexpr unsigned k_msi_dest_id_shift = 12;
constexpr uint64_t k_msi_address_base = 0xfee00000;
// KVM_CAP_X2APIC_API: address bits 63:40 extend the destination to 32 bits.
constexpr uint32_t k_msi_ext_dest_mask = 0xffffff00;

enum class MsiData : uint32_t {
  VectorMask = 0xff,
  DeliveryModeMask = 0x700,
  LevelAssert = 0x4000,
  TriggerLevel = 0x8000,
};

// The message an MSI write (KVM_SIGNAL_MSI, an MSI GSI route) puts on the bus.
ApicMessage msi_message(uint64_t address, uint32_t data, bool x2apic_ext_dest);

// What the interrupt sources talk to. Implemented by machine/ (GSI routing,
// split irqchip exits, vCPU kicks) or by ApicRouter.
class ApicBus {
 public:
  virtual ~ApicBus() = default;
  // Deliver to every matching LAPIC (one of them for lowest priority).
  // `source` is the sending LAPIC (for shorthands), null for IOAPIC/MSI.
  // Returns how many LAPICs accepted it; -1 if no LAPIC matched.
  virtual int deliver(const ApicMessage& msg, Lapic* source) = 0;
  // A LAPIC EOI'd a level-triggered vector: the IOAPICs clear remote IRR.
  virtual void broadcast_eoi(Vector vector) = 0;
  // A LAPIC EOI'd an edge-triggered vector: only ack notifiers care (KVM's
  // PIT reinjection through the IOAPIC). Default: nobody.
  virtual void edge_eoi(Vector) {}
};

// Matches messages over registered LAPICs. Lowest priority goes to the
// matching LAPIC with the lowest arbitration priority (first one on ties).
// Same threading as the LAPICs it serves: the caller serialises.
class ApicRouter final : public ApicBus {
 public:
  void add(Lapic* lapic) { m_lapics.push_back(lapic); }
  // Where EOIs of level-triggered vectors go (an Ioapic's eoi, a split-irqchip exit).
  void on_eoi(std::function<void(Vector)> fn) { m_eoi = std::move(fn); }
  // Told after a LAPIC accepted something (to kick its vCPU).
  void on_accepted(std::function<void(Lapic&)> fn) { m_accepted = std::move(fn); }

  int deliver(const ApicMessage& msg, Lapic* source) override;
  void broadcast_eoi(Vector vector) override {
    if (m_eoi) m_eoi(vector);
  }

 private:
  std::vector<Lapic*> m_lapics;
  std::function<void(Vector)> m_eoi;
  std::function<void(Lapic&)> m_accepted;
};

}  // namespace anykvm::devices
