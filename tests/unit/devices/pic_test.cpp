// 8259A pair driven through ports 0x20/0x21/0xa0/0xa1/0x4d0/0x4d1 as Linux
// (init_8259A) and SeaBIOS program it, then INTA cycles as the CPU runs them.
#include "devices/pic.h"

#include <gtest/gtest.h>

#include <cstring>

#include "fakes.h"

using namespace anykvm;
using namespace anykvm::devices;

namespace {

struct PicTest : ::testing::Test {
  PicPair pic;
  test::RecordingLine intr;

  void out(uint16_t port, uint8_t v) { pic.write_port(Port(port), v); }
  uint8_t in(uint16_t port) { return pic.read_port(Port(port)); }

  // Linux's init_8259A(auto_eoi): mask all, ICW1..ICW4 on both, vectors 0x30/0x38.
  void linux_init(bool auto_eoi = false) {
    out(0x21, 0xff);
    out(0xa1, 0xff);
    out(0x20, 0x11);                    // ICW1: edge, cascade, ICW4 needed
    out(0x21, 0x30);                    // ICW2: IRQ0 -> 0x30
    out(0x21, 0x04);                    // ICW3: slave on IR2
    out(0x21, auto_eoi ? 0x03 : 0x01);  // ICW4: 8086 mode (+ auto EOI)
    out(0xa0, 0x11);
    out(0xa1, 0x38);
    out(0xa1, 0x02);  // ICW3: slave ID 2
    out(0xa1, 0x01);
    out(0x21, 0x00);  // unmask everything
    out(0xa1, 0x00);
  }
  void pulse(unsigned irq) {
    pic.set_irq(irq, true);
    pic.set_irq(irq, false);
  }
  uint8_t isr(uint16_t cmd) {
    out(cmd, 0x0b);  // OCW3: read ISR
    uint8_t v = in(cmd);
    out(cmd, 0x0a);  // back to IRR
    return v;
  }
  uint8_t irr(uint16_t cmd) {
    out(cmd, 0x0a);
    return in(cmd);
  }
};

TEST_F(PicTest, LinuxInitThenEdgeIrqAckAndEoi) {
  pic.set_output(&intr);
  linux_init();
  EXPECT_EQ(in(0x21), 0x00);
  EXPECT_FALSE(pic.has_interrupt());
  pulse(1);
  EXPECT_TRUE(pic.has_interrupt());
  EXPECT_TRUE(intr.level);
  EXPECT_EQ(irr(0x20), 0x02);
  EXPECT_EQ(pic.acknowledge().raw(), 0x31);
  EXPECT_FALSE(intr.level);
  EXPECT_EQ(isr(0x20), 0x02);
  EXPECT_EQ(irr(0x20), 0x00);  // the edge request was consumed
  out(0x20, 0x20);             // non-specific EOI
  EXPECT_EQ(isr(0x20), 0x00);
  EXPECT_FALSE(pic.has_interrupt());
  EXPECT_EQ(intr.rising, 1);
}

TEST_F(PicTest, ImrMasksAndReadsBack) {
  linux_init();
  out(0x21, 0x02);
  EXPECT_EQ(in(0x21), 0x02);
  EXPECT_EQ(pic.set_irq(1, true), IrqResult::Masked);
  EXPECT_FALSE(pic.has_interrupt());
  out(0x21, 0x00);  // the latched edge shows once unmasked
  EXPECT_TRUE(pic.has_interrupt());
  EXPECT_EQ(pic.acknowledge().raw(), 0x31);
}

TEST_F(PicTest, FullyNestedPriorityAndSpecificEoi) {
  linux_init();
  pulse(3);
  pulse(5);
  EXPECT_EQ(pic.acknowledge().raw(), 0x33);
  EXPECT_FALSE(pic.has_interrupt());  // IRQ5 is below IRQ3 in service
  pulse(0);
  EXPECT_TRUE(pic.has_interrupt());  // IRQ0 nests above it
  EXPECT_EQ(pic.acknowledge().raw(), 0x30);
  EXPECT_EQ(isr(0x20), 0x09);
  out(0x20, 0x63);  // specific EOI for IR3 while IR0 stays in service
  EXPECT_EQ(isr(0x20), 0x01);
  EXPECT_FALSE(pic.has_interrupt());
  out(0x20, 0x20);
  EXPECT_EQ(pic.acknowledge().raw(), 0x35);
}

TEST_F(PicTest, CascadeThroughIr2) {
  linux_init();
  pulse(12);
  EXPECT_TRUE(pic.has_interrupt());
  EXPECT_EQ(pic.acknowledge().raw(), 0x3c);
  EXPECT_EQ(isr(0xa0), 0x10);
  EXPECT_EQ(isr(0x20), 0x04);
  pulse(14);  // lower than 12 on the slave: waits
  EXPECT_FALSE(pic.has_interrupt());
  out(0xa0, 0x20);
  EXPECT_FALSE(pic.has_interrupt());  // master IR2 still in service
  out(0x20, 0x20);
  EXPECT_TRUE(pic.has_interrupt());
  EXPECT_EQ(pic.acknowledge().raw(), 0x3e);
  EXPECT_EQ(pic.set_irq(2, true), IrqResult::Masked);  // the cascade pin is not an IRQ
}

TEST_F(PicTest, SpecialFullyNestedLetsSlaveNest) {
  out(0x20, 0x11);
  out(0x21, 0x30);
  out(0x21, 0x04);
  out(0x21, 0x11);  // ICW4: SFNM
  out(0xa0, 0x11);
  out(0xa1, 0x38);
  out(0xa1, 0x02);
  out(0xa1, 0x01);
  out(0x21, 0);
  out(0xa1, 0);
  pulse(14);
  EXPECT_EQ(pic.acknowledge().raw(), 0x3e);
  pulse(9);  // higher on the slave: gets through the in-service IR2
  EXPECT_TRUE(pic.has_interrupt());
  EXPECT_EQ(pic.acknowledge().raw(), 0x39);
  pulse(5);  // but IR2 in service still blocks lower master levels
  EXPECT_FALSE(pic.has_interrupt());
}

TEST_F(PicTest, ElcrLevelTriggeredReassertsUntilLineDrops) {
  linux_init();
  out(0x4d1, 0x02);  // IRQ9 level
  EXPECT_EQ(in(0x4d1), 0x02);
  out(0x4d0, 0xff);  // IRQ0-2 cannot be level (mask 0xf8)
  EXPECT_EQ(in(0x4d0), 0xf8);
  out(0x4d0, 0x00);
  pic.set_irq(9, true);
  EXPECT_EQ(pic.acknowledge().raw(), 0x39);
  out(0xa0, 0x20);
  out(0x20, 0x20);
  EXPECT_TRUE(pic.has_interrupt());  // still asserted: requests again
  EXPECT_EQ(pic.acknowledge().raw(), 0x39);
  out(0xa0, 0x20);
  out(0x20, 0x20);
  pic.set_irq(9, false);
  EXPECT_FALSE(pic.has_interrupt());
  EXPECT_EQ(irr(0xa0), 0x00);
}

TEST_F(PicTest, EdgeCoalescesUntilAcknowledged) {
  linux_init();
  EXPECT_EQ(pic.set_irq(4, true), IrqResult::Delivered);
  pic.set_irq(4, false);
  EXPECT_EQ(pic.set_irq(4, true), IrqResult::Coalesced);
  pic.set_irq(4, false);
  EXPECT_EQ(pic.acknowledge().raw(), 0x34);
  out(0x20, 0x20);
  EXPECT_FALSE(pic.has_interrupt());
  pic.set_irq(4, true);
  pic.set_irq(4, true);  // no new edge while high
  EXPECT_EQ(pic.acknowledge().raw(), 0x34);
  out(0x20, 0x20);
  EXPECT_FALSE(pic.has_interrupt());
}

TEST_F(PicTest, AutoEoiLeavesIsrClear) {
  linux_init(true);
  pulse(1);
  EXPECT_EQ(pic.acknowledge().raw(), 0x31);
  EXPECT_EQ(isr(0x20), 0x00);
  pulse(3);
  EXPECT_TRUE(pic.has_interrupt());  // nothing in service blocks it
}

TEST_F(PicTest, RotateOnAutoEoiMakesServedLevelLowest) {
  linux_init(true);
  out(0x20, 0x80);  // OCW2: set rotate in auto-EOI
  pulse(1);
  EXPECT_EQ(pic.acknowledge().raw(), 0x31);
  pulse(1);
  pulse(5);
  EXPECT_EQ(pic.acknowledge().raw(), 0x35);  // IR1 now has the lowest priority
  EXPECT_EQ(pic.get_state(PicPair::Chip::Master).priority_add, 6);
}

TEST_F(PicTest, RotateOnNonSpecificEoiAndSetPriority) {
  linux_init();
  pulse(1);
  EXPECT_EQ(pic.acknowledge().raw(), 0x31);
  out(0x20, 0xa0);  // rotate on non-specific EOI: IR1 lowest, IR2 highest
  pulse(1);
  pulse(4);
  EXPECT_EQ(pic.acknowledge().raw(), 0x34);
  out(0x20, 0x20);
  EXPECT_EQ(pic.acknowledge().raw(), 0x31);
  out(0x20, 0x20);
  out(0x20, 0xc5);  // set priority: IR5 lowest, IR6 highest
  pulse(0);
  pulse(7);
  EXPECT_EQ(pic.acknowledge().raw(), 0x37);
  out(0x20, 0xe7);  // rotate on specific EOI of IR7
  EXPECT_EQ(pic.get_state(PicPair::Chip::Master).priority_add, 0);
  EXPECT_EQ(pic.acknowledge().raw(), 0x30);
}

TEST_F(PicTest, SpecialMaskModeEnablesLowerLevels) {
  linux_init();
  pulse(1);
  EXPECT_EQ(pic.acknowledge().raw(), 0x31);
  pulse(3);
  EXPECT_FALSE(pic.has_interrupt());
  out(0x21, 0x02);  // mask the in-service level
  out(0x20, 0x68);  // OCW3: set special mask
  EXPECT_TRUE(pic.has_interrupt());
  EXPECT_EQ(pic.acknowledge().raw(), 0x33);
  out(0x20, 0x48);  // reset special mask
  EXPECT_EQ(pic.get_state(PicPair::Chip::Master).special_mask, 0);
}

TEST_F(PicTest, PollCommand) {
  linux_init();
  out(0x20, 0x0c);            // OCW3: poll
  EXPECT_EQ(in(0x20), 0x00);  // nothing pending
  pulse(6);
  out(0x20, 0x0c);
  EXPECT_EQ(in(0x20), 0x86);
  EXPECT_EQ(isr(0x20), 0x40);  // the poll acknowledged it
  EXPECT_FALSE(pic.has_interrupt());
}

TEST_F(PicTest, SpuriousWhenRequestVanished) {
  linux_init();
  out(0x4d0, 0x08);  // IRQ3 level
  pic.set_irq(3, true);
  EXPECT_TRUE(pic.has_interrupt());
  pic.set_irq(3, false);
  EXPECT_EQ(pic.acknowledge().raw(), 0x37);  // spurious IRQ7
  EXPECT_EQ(isr(0x20), 0x00);
}

TEST_F(PicTest, Icw1ResetsMaskAndEdgeSense) {
  linux_init();
  out(0x21, 0x55);
  pic.set_irq(1, true);  // line stays high across re-init
  out(0x20, 0x11);
  EXPECT_EQ(pic.get_state(PicPair::Chip::Master).init_state, 1);
  out(0x21, 0x08);
  out(0x21, 0x04);
  out(0x21, 0x01);
  EXPECT_EQ(in(0x21), 0x00);
  EXPECT_EQ(pic.acknowledge().raw(), 0x0f);  // base 0x08, spurious: no new edge yet
  pic.set_irq(1, false);
  pic.set_irq(1, true);
  EXPECT_EQ(pic.acknowledge().raw(), 0x09);
}

TEST_F(PicTest, SingleModeSkipsIcw3) {
  out(0x20, 0x13);  // ICW1: single, ICW4
  out(0x21, 0x40);
  EXPECT_EQ(pic.get_state(PicPair::Chip::Master).init_state, 3);
  out(0x21, 0x01);
  out(0x21, 0xfe);  // OCW1 now
  EXPECT_EQ(in(0x21), 0xfe);
}

TEST_F(PicTest, StateRoundTripsMidActivity) {
  linux_init();
  out(0x4d1, 0x0c);
  pulse(3);
  pulse(12);
  pulse(5);
  EXPECT_EQ(pic.acknowledge().raw(), 0x3c);  // IR2 (the slave's IRQ12) outranks IR3
  out(0xa0, 0x0b);
  PicChipState m = pic.get_state(PicPair::Chip::Master), s = pic.get_state(PicPair::Chip::Slave);

  PicPair copy;
  copy.set_state(PicPair::Chip::Master, m);
  copy.set_state(PicPair::Chip::Slave, s);
  PicChipState m2 = copy.get_state(PicPair::Chip::Master), s2 = copy.get_state(PicPair::Chip::Slave);
  EXPECT_EQ(0, std::memcmp(&m, &m2, sizeof m));
  EXPECT_EQ(0, std::memcmp(&s, &s2, sizeof s));
  EXPECT_EQ(s2.elcr, 0x0c);
  // Both carry on identically.
  for (PicPair* p : {&pic, &copy}) {
    EXPECT_EQ(p->read_port(Port(0xa0)), 0x10);  // ISR select survived
    EXPECT_FALSE(p->has_interrupt());
    p->write_port(Port(0xa0), 0x20);
    p->write_port(Port(0x20), 0x20);
    EXPECT_EQ(p->acknowledge().raw(), 0x33);
    p->write_port(Port(0x20), 0x20);
    EXPECT_EQ(p->acknowledge().raw(), 0x35);
    EXPECT_FALSE(p->has_interrupt());
  }
}

}  // namespace
