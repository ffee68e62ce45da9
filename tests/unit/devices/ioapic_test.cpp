// 82093AA IOAPIC driven through IOREGSEL/IOWIN as an OS programs it; the
// messages it puts on the APIC bus; remote IRR until the LAPIC's EOI.
#include "devices/ioapic.h"

#include <gtest/gtest.h>

#include <cstring>

#include "devices/lapic.h"
#include "fakes.h"

using namespace anykvm;
using namespace anykvm::devices;

namespace {

struct IoapicTest : ::testing::Test {
  test::RecordingBus bus;
  Ioapic io{bus};

  uint32_t read(uint32_t reg) {
    io.mmio_write(0x00, reg, 4);
    return io.mmio_read(0x10, 4);
  }
  void write(uint32_t reg, uint32_t v) {
    io.mmio_write(0x00, reg, 4);
    io.mmio_write(0x10, v, 4);
  }
  void program(unsigned pin, uint32_t low, uint8_t dest) {
    write(0x11 + 2 * pin, uint32_t(dest) << 24);
    write(0x10 + 2 * pin, low);
  }
};

TEST_F(IoapicTest, IdVersionAndSelect) {
  EXPECT_EQ(read(0x01), 0x00170011u);  // 24 entries, version 0x11
  write(0x00, 0x0a000000);
  EXPECT_EQ(read(0x00), 0x0a000000u);
  EXPECT_EQ(read(0x02), 0x0a000000u);
  EXPECT_EQ(io.mmio_read(0x00, 4), 0x02u);  // IOREGSEL reads back
  write(0x01, 0);                           // read-only
  EXPECT_EQ(read(0x01), 0x00170011u);
  EXPECT_EQ(read(0x10), 0x00010000u);  // entries reset masked
  EXPECT_EQ(io.base().raw(), 0xfec00000u);
}

TEST_F(IoapicTest, EdgePinDeliversMessage) {
  // vector 0x41, lowest priority, logical, edge, unmasked, dest 0x03
  program(4, 0x41 | (1 << 8) | (1 << 11), 0x03);
  EXPECT_EQ(read(0x18), 0x941u);
  EXPECT_EQ(read(0x19), 0x03000000u);
  EXPECT_EQ(io.set_irq(4, true), IrqResult::Delivered);
  io.set_irq(4, false);
  ASSERT_EQ(bus.messages.size(), 1u);
  const ApicMessage& m = bus.messages[0];
  EXPECT_EQ(m.vector.raw(), 0x41);
  EXPECT_EQ(m.dest, 3u);
  EXPECT_EQ(m.dest_mode, DestMode::Logical);
  EXPECT_EQ(m.delivery_mode, DeliveryMode::LowestPriority);
  EXPECT_EQ(m.trigger, TriggerMode::Edge);
  EXPECT_EQ(io.get_state().irr, 0u);
  EXPECT_EQ(io.set_irq(4, true), IrqResult::Delivered);  // a new edge, a new message
  EXPECT_EQ(io.set_irq(4, true), IrqResult::Coalesced);  // no edge
  EXPECT_EQ(bus.messages.size(), 2u);
}

TEST_F(IoapicTest, MaskedEdgeIsDropped) {
  program(5, 0x42 | (1 << 16), 0);
  EXPECT_EQ(io.set_irq(5, true), IrqResult::Masked);
  io.set_irq(5, false);
  write(0x1a, 0x42);  // unmask
  EXPECT_TRUE(bus.messages.empty());
}

TEST_F(IoapicTest, LevelPinHoldsRemoteIrrUntilEoi) {
  program(9, 0x51 | (1 << 15), 0);  // fixed, physical, level
  EXPECT_EQ(io.set_irq(9, true), IrqResult::Delivered);
  EXPECT_EQ(bus.messages.size(), 1u);
  EXPECT_EQ(bus.messages[0].trigger, TriggerMode::Level);
  EXPECT_TRUE(read(0x22) & (1 << 14));  // remote IRR
  write(0x22, 0x51 | (1 << 15));        // remote IRR is read-only
  EXPECT_TRUE(read(0x22) & (1 << 14));
  EXPECT_EQ(io.set_irq(9, true), IrqResult::Coalesced);
  EXPECT_EQ(bus.messages.size(), 1u);
  io.eoi(Vector(0x50));  // another vector: nothing
  EXPECT_TRUE(read(0x22) & (1 << 14));
  io.eoi(Vector(0x51));  // line still high: delivered again
  EXPECT_EQ(bus.messages.size(), 2u);
  EXPECT_TRUE(read(0x22) & (1 << 14));
  io.set_irq(9, false);
  io.mmio_write(0x40, 0x51, 4);  // the version-0x20 EOI register works too
  EXPECT_FALSE(read(0x22) & (1 << 14));
  EXPECT_EQ(bus.messages.size(), 2u);
}

TEST_F(IoapicTest, UnmaskingAssertedLevelPinDelivers) {
  program(10, 0x60 | (1 << 15) | (1 << 16), 0);
  EXPECT_EQ(io.set_irq(10, true), IrqResult::Masked);
  EXPECT_TRUE(bus.messages.empty());
  write(0x24, 0x60 | (1 << 15));
  EXPECT_EQ(bus.messages.size(), 1u);
}

TEST_F(IoapicTest, UndeliveredLevelDoesNotSetRemoteIrr) {
  bus.answer = -1;  // nobody matched
  program(3, 0x70 | (1 << 15), 7);
  EXPECT_EQ(io.set_irq(3, true), IrqResult::Coalesced);
  EXPECT_FALSE(read(0x16) & (1 << 14));
}

TEST_F(IoapicTest, SwitchingToEdgeClearsRemoteIrr) {
  program(2, 0x30 | (1 << 15), 0);
  io.set_irq(2, true);
  EXPECT_TRUE(read(0x14) & (1 << 14));
  write(0x14, 0x30);
  EXPECT_FALSE(read(0x14) & (1 << 14));
}

TEST_F(IoapicTest, StateRoundTrips) {
  write(0x00, 0x05000000);
  program(1, 0x31, 1);
  program(9, 0x51 | (1 << 15), 2);
  io.set_irq(9, true);
  io.mmio_write(0x00, 0x12, 4);
  IoapicState s = io.get_state();
  EXPECT_EQ(s.id, 5u);
  EXPECT_EQ(s.irr, 1u << 9);
  EXPECT_EQ(s.ioregsel, 0x12u);
  EXPECT_EQ(s.redirtbl[1], 0x31ull | (1ull << 56));

  test::RecordingBus bus2;
  Ioapic io2(bus2);
  io2.set_state(s);
  IoapicState s2 = io2.get_state();
  EXPECT_EQ(0, std::memcmp(&s, &s2, sizeof s));
  io2.eoi(Vector(0x51));  // remote IRR and the asserted line came across
  EXPECT_EQ(bus2.messages.size(), 1u);
  EXPECT_EQ(bus2.messages[0].dest, 2u);
}

// IOAPIC -> router -> LAPIC -> CPU acknowledge -> EOI -> IOAPIC.
TEST(IoapicLapic, LevelInterruptRoundTrip) {
  ManualClock clock;
  ApicRouter router;
  Lapic lapic(VcpuId(0), clock, router);
  Ioapic io(router);
  router.add(&lapic);
  router.on_eoi([&](Vector v) { io.eoi(v); });
  lapic.mmio_write(0xf0, 0x1ff, 4);  // software enable
  io.mmio_write(0x00, 0x10 + 2 * 11, 4);
  io.mmio_write(0x10, 0x63 | (1 << 15), 4);  // level, physical dest 0
  EXPECT_EQ(io.set_irq(11, true), IrqResult::Delivered);
  EXPECT_EQ(lapic.has_interrupt()->raw(), 0x63);
  EXPECT_EQ(lapic.acknowledge().raw(), 0x63);
  EXPECT_EQ(lapic.mmio_read(0x180 + 0x30, 4), 1u << 3);  // TMR: level
  io.set_irq(11, false);
  lapic.mmio_write(0xb0, 0, 4);  // EOI
  EXPECT_EQ(io.get_state().redirtbl[11] & (1u << 14), 0u);
  EXPECT_FALSE(lapic.has_interrupt());
}

}  // namespace

namespace {

TEST(Msi, AddressAndDataDecode) {
  // Linux's MSI: address 0xfee0_1000 (dest 1, physical), data vector 0x41 fixed edge.
  ApicMessage m = msi_message(0xfee01000, 0x4041, false);
  EXPECT_EQ(m.dest, 1u);
  EXPECT_EQ(m.dest_mode, DestMode::Physical);
  EXPECT_EQ(m.delivery_mode, DeliveryMode::Fixed);
  EXPECT_EQ(m.vector.raw(), 0x41);
  EXPECT_EQ(m.trigger, TriggerMode::Edge);
  EXPECT_FALSE(m.x2apic_dest);
  m = msi_message(0xfee0f00c, 0xc1a2, false);  // dest 0x0f, logical, RH; lowest prio, level
  EXPECT_EQ(m.dest, 0x0fu);
  EXPECT_EQ(m.dest_mode, DestMode::Logical);
  EXPECT_EQ(m.delivery_mode, DeliveryMode::LowestPriority);
  EXPECT_EQ(m.trigger, TriggerMode::Level);
  m = msi_message((0x12ull << 40) | 0xfee34000, 0x30, true);  // extended destination
  EXPECT_EQ(m.dest, 0x1234u);
  EXPECT_TRUE(m.x2apic_dest);
  m = msi_message((0x12ull << 40) | 0xfee34000, 0x30, false);
  EXPECT_EQ(m.dest, 0x34u);
}

}  // namespace
