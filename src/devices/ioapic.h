// The 82093AA I/O APIC (Intel 82093AA datasheet, 3.0 "Register description"),
// as KVM presents it: version 0x11, 24 pins, IOREGSEL at base+0x00, IOWIN at
// base+0x10, and the version-0x20 EOI register at base+0x40 that KVM also
// honours. Level-triggered pins hold remote IRR from delivery until a LAPIC
// broadcasts the EOI of their vector, then re-deliver if the line is still
// asserted. Input levels are logical (asserted = true): polarity is the
// caller's business, as in KVM. Edge requests on a masked pin are dropped
// (82093AA: masked edge interrupts are neither delivered nor held).
// State round-trips through IoapicState, shaped like Linux's struct kvm_ioapic_state.
#pragma once
#include <cstdint>

#include "base/types.h"
#include "devices/apic_bus.h"
#include "devices/edges.h"

namespace anykvm::devices {

constexpr unsigned k_ioapic_pins = 24;  // KVM_IOAPIC_NUM_PINS
constexpr uint64_t k_ioapic_default_base = 0xfec00000;

// MMIO offsets from the IOAPIC base.
enum class IoapicMmio : uint32_t { RegSelect = 0x00, Window = 0x10, Eoi = 0x40 };

// Indirect registers (through IOREGSEL).
enum class IoapicReg : uint32_t { Id = 0x00, Version = 0x01, Arbitration = 0x02, RedirBase = 0x10 };

// Redirection table entry bits (datasheet 3.2.4).
enum class Redir : uint64_t {
  VectorMask = 0xff,
  DeliveryModeMask = 0x700,
  DestLogical = 1ull << 11,
  DeliveryStatus = 1ull << 12,  // read-only
  PolarityLow = 1ull << 13,
  RemoteIrr = 1ull << 14,  // read-only
  TriggerLevel = 1ull << 15,
  Masked = 1ull << 16,
};
constexpr unsigned k_redir_dest_shift = 56;
constexpr uint32_t k_ioapic_version = 0x11;

// Same layout as Linux's struct kvm_ioapic_state (redirtbl is its union's `bits`).
struct IoapicState {
  uint64_t base_address;
  uint32_t ioregsel;
  uint32_t id;   // the 4-bit IOAPIC ID (register 0 bits 27:24)
  uint32_t irr;  // asserted level pins, and edge requests not yet delivered
  uint32_t pad;
  uint64_t redirtbl[k_ioapic_pins];
};
static_assert(sizeof(IoapicState) == 216);

// Single-threaded: the machine serialises calls (one lock per IOAPIC).
class Ioapic {
 public:
  explicit Ioapic(ApicBus& bus);

  // `offset` from the base (page offset); len 1, 2, 4 or 8 reads/writes the low bytes.
  uint32_t mmio_read(uint32_t offset, unsigned len);
  void mmio_write(uint32_t offset, uint32_t value, unsigned len);

  // Drive pin 0-23 (logical level).
  IrqResult set_irq(unsigned pin, bool level);
  // A LAPIC EOI'd `vector` (ApicBus::broadcast_eoi lands here).
  void eoi(Vector vector);

  Gpa base() const { return Gpa(m_s.base_address); }
  const IoapicState& get_state() const { return m_s; }
  void set_state(const IoapicState& s);
  void reset();

 private:
  uint32_t read_indirect() const;
  void write_indirect(uint32_t value);
  IrqResult service(unsigned pin);

  ApicBus& m_bus;
  IoapicState m_s{};
  uint32_t m_line = 0;  // input levels, for edge detection (level pins mirror irr)
};

}  // namespace anykvm::devices
