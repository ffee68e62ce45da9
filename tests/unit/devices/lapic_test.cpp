// Local APIC through its xAPIC page and x2APIC MSRs, with a fake clock:
// priorities, EOI, timer modes, IPIs over a router, ESR, mode switches, state.
#include "devices/lapic.h"

#include <gtest/gtest.h>

#include <cstring>

#include "fakes.h"

using namespace anykvm;
using namespace anykvm::devices;

namespace {

constexpr uint32_t ID = 0x20, VER = 0x30, TPR = 0x80, APR = 0x90, PPR = 0xa0, EOI = 0xb0, LDR = 0xd0,
                   DFR = 0xe0, SVR = 0xf0, ISR = 0x100, TMR = 0x180, IRR = 0x200, ESR = 0x280, ICR = 0x300,
                   ICR2 = 0x310, LVTT = 0x320, LVT0 = 0x350, LVT1 = 0x360, LVTERR = 0x370, TMICT = 0x380,
                   TMCCT = 0x390, TDCR = 0x3e0;

// INTA then EOI, as a guest handler does.
uint8_t take(Lapic& l) {
  uint8_t v = l.acknowledge().raw();
  if (l.x2apic_mode())
    EXPECT_TRUE(l.write_msr(0x80b, 0));
  else
    l.mmio_write(EOI, 0, 4);
  return v;
}

struct LapicTest : ::testing::Test {
  ManualClock clock;
  test::RecordingBus bus;
  Lapic apic{VcpuId(0), clock, bus};

  uint32_t rd(uint32_t off) { return apic.mmio_read(off, 4); }
  void wr(uint32_t off, uint32_t v) { apic.mmio_write(off, v, 4); }
  void enable() { wr(SVR, 0x1ff); }
  bool irr_bit(unsigned v) { return rd(IRR + (v / 32) * 0x10) & (1u << (v % 32)); }
  bool isr_bit(unsigned v) { return rd(ISR + (v / 32) * 0x10) & (1u << (v % 32)); }
};

TEST_F(LapicTest, ResetValues) {
  EXPECT_EQ(apic.apic_base(), 0xfee00900u);  // enabled, BSP
  EXPECT_EQ(rd(ID), 0u);
  EXPECT_EQ(rd(VER), 0x00050014u);
  EXPECT_EQ(rd(SVR), 0xffu);
  EXPECT_EQ(rd(DFR), 0xffffffffu);
  EXPECT_EQ(rd(LVTT), 0x10000u);
  EXPECT_EQ(rd(LVTERR), 0x10000u);
  EXPECT_EQ(apic.mmio_read(VER + 2, 1), 0x05u);  // byte read inside a register
  EXPECT_EQ(apic.mmio_read(VER + 2, 4), 0u);     // crossing a register: nothing
  Lapic ap(VcpuId(3), clock, bus);
  EXPECT_EQ(ap.apic_base(), 0xfee00800u);
  EXPECT_EQ(ap.mmio_read(ID, 4), 0x03000000u);
}

TEST_F(LapicTest, TprMasksByPriorityClass) {
  enable();
  apic.accept_interrupt(Vector(0x45), TriggerMode::Edge);
  apic.accept_interrupt(Vector(0x81), TriggerMode::Edge);
  wr(TPR, 0x85);
  EXPECT_EQ(rd(PPR), 0x85u);
  EXPECT_FALSE(apic.has_interrupt());  // 0x81 is in class 8, not above
  wr(TPR, 0x7f);
  EXPECT_EQ(apic.has_interrupt()->raw(), 0x81);
  apic.set_cr8(0x3);
  EXPECT_EQ(rd(TPR), 0x30u);
  EXPECT_EQ(apic.cr8(), 3);
  EXPECT_EQ(apic.acknowledge().raw(), 0x81);
  EXPECT_EQ(rd(PPR), 0x80u);  // ISR class dominates
  EXPECT_FALSE(apic.has_interrupt());
  EXPECT_EQ(apic.acknowledge().raw(), 0xff);  // spurious vector, nothing moves
  EXPECT_TRUE(irr_bit(0x45));
}

TEST_F(LapicTest, AcknowledgeAndEoiNest) {
  enable();
  apic.accept_interrupt(Vector(0x31), TriggerMode::Edge);
  EXPECT_EQ(apic.acknowledge().raw(), 0x31);
  EXPECT_TRUE(isr_bit(0x31));
  EXPECT_FALSE(irr_bit(0x31));
  apic.accept_interrupt(Vector(0x92), TriggerMode::Level);
  EXPECT_EQ(apic.acknowledge().raw(), 0x92);  // nests above 0x31
  EXPECT_TRUE(rd(TMR + 0x40) & (1u << 0x12));
  EXPECT_EQ(rd(PPR), 0x90u);
  wr(EOI, 0);  // EOIs the highest in service, a level one: broadcast
  ASSERT_EQ(bus.eois.size(), 1u);
  EXPECT_EQ(bus.eois[0], 0x92);
  EXPECT_EQ(rd(PPR), 0x30u);
  EXPECT_TRUE(bus.edge_eois.empty());
  wr(EOI, 0);  // edge: no broadcast, only the ack notifiers' edge_eoi
  EXPECT_EQ(bus.eois.size(), 1u);
  ASSERT_EQ(bus.edge_eois.size(), 1u);
  EXPECT_EQ(bus.edge_eois[0], 0x31);
  EXPECT_EQ(rd(PPR), 0x00u);
  EXPECT_FALSE(isr_bit(0x31));
}

TEST_F(LapicTest, ArbitrationPriority) {
  enable();
  wr(TPR, 0x40);
  EXPECT_EQ(rd(APR), 0x40u);
  apic.accept_interrupt(Vector(0x61), TriggerMode::Edge);
  EXPECT_EQ(rd(APR), 0x60u);
}

TEST_F(LapicTest, SoftwareDisabledDropsFixedAndForcesMasks) {
  EXPECT_FALSE(apic.sw_enabled());
  wr(LVTT, 0x20);
  EXPECT_EQ(rd(LVTT), 0x10020u);  // mask cannot be cleared while disabled
  ApicMessage m;
  m.vector = Vector(0x40);
  EXPECT_FALSE(apic.accept(m));
  m.delivery_mode = DeliveryMode::Nmi;
  EXPECT_TRUE(apic.accept(m));
  EXPECT_TRUE(apic.take_event(LapicEvent::Nmi));
  EXPECT_FALSE(apic.take_event(LapicEvent::Nmi));
  enable();
  wr(LVTT, 0x20);
  EXPECT_EQ(rd(LVTT), 0x20u);
  wr(SVR, 0xff);  // disabling masks every LVT
  EXPECT_EQ(rd(LVTT), 0x10020u);
}

TEST_F(LapicTest, OneShotTimerCountsWithDivider) {
  enable();
  wr(TDCR, 0x3);  // divide by 16
  wr(LVTT, 0xec);
  wr(TMICT, 1000);
  EXPECT_EQ(rd(TMCCT), 1000u);
  ASSERT_TRUE(apic.next_timer_deadline());
  EXPECT_EQ(*apic.next_timer_deadline() - clock.now(), 16000);
  clock.advance_ns(8000);
  EXPECT_EQ(rd(TMCCT), 500u);
  EXPECT_FALSE(apic.has_interrupt());
  clock.advance_ns(8000);
  EXPECT_EQ(rd(TMCCT), 0u);
  EXPECT_EQ(apic.has_interrupt()->raw(), 0xec);
  EXPECT_FALSE(apic.next_timer_deadline());
  EXPECT_EQ(apic.acknowledge().raw(), 0xec);
  wr(EOI, 0);
  clock.advance_ns(100000);
  EXPECT_FALSE(apic.has_interrupt());  // one shot only
  EXPECT_EQ(rd(TMCCT), 0u);
}

TEST_F(LapicTest, DividerValues) {
  enable();
  wr(LVTT, 0x40);
  const uint32_t codes[] = {0x0, 0x1, 0x2, 0x3, 0x8, 0x9, 0xa, 0xb};
  const int64_t div[] = {2, 4, 8, 16, 32, 64, 128, 1};
  for (int i = 0; i < 8; ++i) {
    wr(TDCR, codes[i]);
    wr(TMICT, 100);
    EXPECT_EQ(*apic.next_timer_deadline() - clock.now(), 100 * div[i]) << i;
  }
}

TEST_F(LapicTest, PeriodicTimerReloads) {
  enable();
  wr(TDCR, 0xb);  // divide by 1
  wr(LVTT, 0x20000 | 0x40);
  wr(TMICT, 1'000'000);  // 1 ms
  clock.advance_ns(1'250'000);
  EXPECT_EQ(rd(TMCCT), 750'000u);
  EXPECT_EQ(apic.acknowledge().raw(), 0x40);
  wr(EOI, 0);
  EXPECT_EQ(*apic.next_timer_deadline() - clock.now(), 750'000);
  clock.advance_ns(750'000);
  EXPECT_EQ(apic.acknowledge().raw(), 0x40);
  wr(EOI, 0);
  clock.advance_ns(3'500'000);  // three periods lost: one interrupt (IRR holds one)
  EXPECT_EQ(apic.acknowledge().raw(), 0x40);
  wr(EOI, 0);
  EXPECT_FALSE(apic.has_interrupt());
  EXPECT_EQ(rd(TMCCT), 500'000u);
  EXPECT_EQ(*apic.next_timer_deadline() - clock.now(), 500'000);
  wr(TMICT, 0);  // stops it
  EXPECT_FALSE(apic.next_timer_deadline());
}

TEST_F(LapicTest, ShortPeriodicTimerIsPaced) {
  enable();
  wr(TDCR, 0xb);
  wr(LVTT, 0x20000 | 0x40);
  wr(TMICT, 3000);
  clock.advance_ns(3000);
  EXPECT_EQ(apic.acknowledge().raw(), 0x40);
  wr(EOI, 0);
  // The next interrupt waits whole periods until 200 us have passed.
  EXPECT_EQ(*apic.next_timer_deadline() - clock.now(), 201'000);
  clock.advance_ns(1000);
  EXPECT_EQ(rd(TMCCT), 2000u);  // the count is not paced
}

TEST_F(LapicTest, DivideChangeKeepsCount) {
  enable();
  wr(TDCR, 0xb);
  wr(LVTT, 0x40);
  wr(TMICT, 1000);
  clock.advance_ns(400);
  wr(TDCR, 0x0);  // divide by 2 from here
  EXPECT_EQ(rd(TMCCT), 600u);
  clock.advance_ns(400);
  EXPECT_EQ(rd(TMCCT), 400u);
  EXPECT_EQ(*apic.next_timer_deadline() - clock.now(), 800);
}

TEST_F(LapicTest, MaskedTimerExpiresSilently) {
  enable();
  wr(LVTT, 0x10040);
  wr(TMICT, 10);
  EXPECT_FALSE(apic.next_timer_deadline());
  clock.advance_ns(1000);
  wr(LVTT, 0x40);  // unmasking later does not deliver the old expiry
  EXPECT_FALSE(apic.has_interrupt());
}

TEST_F(LapicTest, TscDeadlineMode) {
  enable();
  apic.set_tsc_khz(2'000'000);        // 2 GHz: 2 cycles per ns
  apic.set_tsc_deadline(5000, 1000);  // ignored outside TSC-deadline mode
  EXPECT_EQ(apic.tsc_deadline(), 0u);
  wr(TMICT, 100);
  wr(LVTT, 0x40000 | 0x50);  // mode change disarms and clears the initial count
  EXPECT_EQ(rd(TMICT), 0u);
  wr(TMICT, 100);  // ignored in this mode
  EXPECT_EQ(rd(TMICT), 0u);
  EXPECT_FALSE(apic.next_timer_deadline());
  apic.set_tsc_deadline(5000, 1000);
  EXPECT_EQ(apic.tsc_deadline(), 5000u);
  EXPECT_EQ(*apic.next_timer_deadline() - clock.now(), 2000);
  clock.advance_ns(1999);
  EXPECT_FALSE(apic.has_interrupt());
  clock.advance_ns(1);
  EXPECT_EQ(apic.has_interrupt()->raw(), 0x50);
  EXPECT_EQ(apic.tsc_deadline(), 0u);  // firing clears the MSR
  EXPECT_EQ(rd(TMCCT), 0u);
  apic.set_tsc_deadline(10, 20);  // already past: fires at once
  EXPECT_EQ(*apic.next_timer_deadline(), clock.now());
}

TEST_F(LapicTest, ErrorRegisterLatchesOnWrite) {
  enable();
  wr(LVTERR, 0xfe);
  wr(ICR, 0x05);  // fixed IPI with illegal vector 5
  EXPECT_TRUE(bus.messages.empty());
  EXPECT_EQ(rd(ESR), 0u);                     // not visible before the write
  EXPECT_EQ(apic.acknowledge().raw(), 0xfe);  // the error LVT fired
  wr(ESR, 0);
  EXPECT_EQ(rd(ESR), 0x20u);
  apic.accept_interrupt(Vector(3), TriggerMode::Edge);
  rd(0x290);  // reserved register: illegal register address
  wr(ESR, 0);
  EXPECT_EQ(rd(ESR), 0xc0u);
  wr(ESR, 0);
  EXPECT_EQ(rd(ESR), 0u);
}

TEST_F(LapicTest, IcrBuildsMessages) {
  enable();
  wr(ICR2, 0x05000000);
  wr(ICR, 0x4000 | 0x800 | 0x100 | 0x77);  // lowest priority, logical, assert
  ASSERT_EQ(bus.messages.size(), 1u);
  ApicMessage m = bus.messages.back();
  EXPECT_EQ(m.dest, 5u);
  EXPECT_EQ(m.dest_mode, DestMode::Logical);
  EXPECT_EQ(m.delivery_mode, DeliveryMode::LowestPriority);
  EXPECT_EQ(m.vector.raw(), 0x77);
  EXPECT_FALSE(m.x2apic_dest);
  EXPECT_EQ(rd(ICR), 0x4977u);  // delivery status idle
  wr(ICR, 0x8000 | 0x500);      // INIT level de-assert: not sent
  EXPECT_EQ(bus.messages.size(), 1u);
  wr(ICR, 0xc0000 | 0x4000 | 0x600 | 0x9a);  // SIPI to all excluding self
  ASSERT_EQ(bus.messages.size(), 2u);
  EXPECT_EQ(bus.messages[1].shorthand, DestShorthand::AllExcludingSelf);
  EXPECT_EQ(bus.messages[1].delivery_mode, DeliveryMode::StartUp);
}

struct TwoCpus : ::testing::Test {
  ManualClock clock;
  ApicRouter router;
  Lapic a{VcpuId(0), clock, router}, b{VcpuId(1), clock, router};
  std::vector<Lapic*> woken;
  void SetUp() override {
    router.add(&a);
    router.add(&b);
    router.on_accepted([this](Lapic& l) { woken.push_back(&l); });
    a.mmio_write(SVR, 0x1ff, 4);
    b.mmio_write(SVR, 0x1ff, 4);
  }
};

TEST_F(TwoCpus, FixedPhysicalIpi) {
  a.mmio_write(ICR2, 1u << 24, 4);
  a.mmio_write(ICR, 0x4000 | 0x41, 4);
  EXPECT_FALSE(a.has_interrupt());
  EXPECT_EQ(b.has_interrupt()->raw(), 0x41);
  ASSERT_EQ(woken.size(), 1u);
  EXPECT_EQ(woken[0], &b);
}

TEST_F(TwoCpus, LogicalFlatAndCluster) {
  a.mmio_write(LDR, 0x01000000, 4);
  b.mmio_write(LDR, 0x02000000, 4);
  a.mmio_write(ICR2, 0x03000000, 4);
  a.mmio_write(ICR, 0x4000 | 0x800 | 0x42, 4);  // flat: both
  EXPECT_EQ(take(a), 0x42);
  EXPECT_EQ(take(b), 0x42);
  a.mmio_write(DFR, 0x0fffffff, 4);  // cluster model
  b.mmio_write(DFR, 0x0fffffff, 4);
  b.mmio_write(LDR, 0x12000000, 4);  // cluster 1, member bit 1
  a.mmio_write(ICR2, 0x12000000, 4);
  a.mmio_write(ICR, 0x4000 | 0x800 | 0x43, 4);
  EXPECT_FALSE(a.has_interrupt());
  EXPECT_EQ(take(b), 0x43);
}

TEST_F(TwoCpus, ShorthandsAndBroadcast) {
  a.mmio_write(ICR, 0x40000 | 0x4000 | 0x50, 4);  // self
  EXPECT_EQ(take(a), 0x50);
  EXPECT_FALSE(b.has_interrupt());
  a.mmio_write(ICR, 0x80000 | 0x4000 | 0x51, 4);  // all including self
  EXPECT_EQ(take(a), 0x51);
  EXPECT_EQ(take(b), 0x51);
  a.mmio_write(ICR, 0xc0000 | 0x4000 | 0x52, 4);  // all excluding self
  EXPECT_FALSE(a.has_interrupt());
  EXPECT_EQ(take(b), 0x52);
  a.mmio_write(ICR2, 0xff000000, 4);  // physical broadcast
  a.mmio_write(ICR, 0x4000 | 0x53, 4);
  EXPECT_EQ(take(a), 0x53);
  EXPECT_EQ(take(b), 0x53);
}

TEST_F(TwoCpus, NmiInitSipi) {
  a.mmio_write(ICR2, 1u << 24, 4);
  a.mmio_write(ICR, 0x4000 | 0x400, 4);  // NMI
  EXPECT_TRUE(b.take_event(LapicEvent::Nmi));
  b.mmio_write(SVR, 0xff, 4);  // INIT/SIPI reach a software-disabled APIC
  a.mmio_write(ICR, 0x4000 | 0x500, 4);
  EXPECT_TRUE(b.take_event(LapicEvent::Init));
  a.mmio_write(ICR, 0x4000 | 0x600 | 0x9f, 4);
  EXPECT_TRUE(b.take_event(LapicEvent::StartUp));
  EXPECT_EQ(b.sipi_vector(), 0x9f);
  EXPECT_EQ(a.pending_events(), 0);
}

TEST_F(TwoCpus, LowestPriorityPicksLowerTpr) {
  a.mmio_write(TPR, 0x60, 4);
  b.mmio_write(TPR, 0x20, 4);
  a.mmio_write(ICR2, 0xff000000, 4);
  a.mmio_write(ICR, 0x4000 | 0x800 | 0x100 | 0x70, 4);
  EXPECT_FALSE(a.has_interrupt());
  EXPECT_EQ(b.has_interrupt()->raw(), 0x70);
  EXPECT_EQ(woken.size(), 1u);
}

TEST_F(TwoCpus, GloballyDisabledApicReceivesNothing) {
  ASSERT_TRUE(b.set_apic_base(0xfee00000));
  EXPECT_FALSE(b.mmio_enabled());
  EXPECT_TRUE(b.accepts_pic_interrupts());
  a.mmio_write(ICR, 0xc0000 | 0x4000 | 0x52, 4);
  EXPECT_FALSE(b.has_interrupt());
}

TEST_F(LapicTest, Lint0VirtualWireAndLint1Nmi) {
  enable();
  EXPECT_FALSE(apic.accepts_pic_interrupts());
  wr(LVT0, 0x700);  // ExtINT, unmasked
  wr(LVT1, 0x400);  // NMI
  EXPECT_TRUE(apic.accepts_pic_interrupts());
  apic.set_lint(0, true);
  EXPECT_TRUE(apic.pending_events() & bits(LapicEvent::ExtInt));
  apic.set_lint(0, false);
  EXPECT_FALSE(apic.pending_events() & bits(LapicEvent::ExtInt));
  apic.set_lint(1, true);
  EXPECT_TRUE(apic.take_event(LapicEvent::Nmi));
  apic.set_lint(1, true);  // no new edge
  EXPECT_FALSE(apic.take_event(LapicEvent::Nmi));
}

TEST_F(LapicTest, ApicBaseTransitions) {
  EXPECT_FALSE(apic.set_apic_base(0xfee00000 | 0x400));         // EXTD without EN
  EXPECT_FALSE(apic.set_apic_base(0xfee00900 | (1ull << 60)));  // reserved
  EXPECT_TRUE(apic.set_apic_base(0xfee00d00));                  // xAPIC -> x2APIC
  EXPECT_TRUE(apic.x2apic_mode());
  EXPECT_FALSE(apic.mmio_enabled());
  EXPECT_FALSE(apic.set_apic_base(0xfee00900));  // x2APIC -> xAPIC is invalid
  EXPECT_TRUE(apic.set_apic_base(0xfee00100));   // -> disabled
  EXPECT_FALSE(apic.set_apic_base(0xfee00d00));  // disabled -> x2APIC is invalid
  EXPECT_TRUE(apic.set_apic_base(0xfee00900));
  EXPECT_EQ(rd(SVR), 0xffu);  // came back in reset state
  EXPECT_TRUE(apic.set_apic_base(0xfed00900));
  EXPECT_EQ(apic.mmio_base().raw(), 0xfed00000u);
}

TEST_F(LapicTest, X2apicMsrs) {
  Lapic ap(VcpuId(0x23), clock, bus);
  EXPECT_FALSE(ap.read_msr(0x802));  // not in x2APIC mode: #GP
  ASSERT_TRUE(ap.set_apic_base(0xfee00c00));
  EXPECT_EQ(*ap.read_msr(0x802), 0x23u);                   // full ID
  EXPECT_EQ(*ap.read_msr(0x80d), (2u << 16) | (1u << 3));  // LDR: cluster 2, bit 3
  EXPECT_EQ(*ap.read_msr(0x803), 0x50014u);
  EXPECT_FALSE(ap.write_msr(0x802, 5));  // read-only
  EXPECT_FALSE(ap.write_msr(0x80d, 5));
  EXPECT_FALSE(ap.read_msr(0x80e));          // no DFR
  EXPECT_FALSE(ap.read_msr(0x809));          // no APR
  EXPECT_FALSE(ap.read_msr(0x831));          // no ICR high
  EXPECT_FALSE(ap.read_msr(0x80b));          // EOI is write-only
  EXPECT_FALSE(ap.read_msr(0x83f));          // SELF IPI is write-only
  EXPECT_FALSE(ap.write_msr(0x80b, 1));      // EOI with data
  EXPECT_FALSE(ap.write_msr(0x828, 1));      // ESR with data
  EXPECT_FALSE(ap.write_msr(0x808, 0x100));  // TPR reserved bits
  EXPECT_FALSE(ap.write_msr(0x80f, 1ull << 32));
  EXPECT_FALSE(ap.read_msr(0x8ff));
  ASSERT_TRUE(ap.write_msr(0x80f, 0x1ff));
  ASSERT_TRUE(ap.write_msr(0x83f, 0x66));  // SELF IPI
  EXPECT_EQ(ap.has_interrupt()->raw(), 0x66);
  EXPECT_EQ(*ap.read_msr(0x820 + 3), 1u << 6);  // IRR bits 96-127
  ASSERT_TRUE(ap.write_msr(0x808, 0x70));
  EXPECT_FALSE(ap.has_interrupt());
  EXPECT_EQ(*ap.read_msr(0x80a), 0x70u);
  ASSERT_TRUE(ap.write_msr(0x808, 0));
  EXPECT_EQ(ap.acknowledge().raw(), 0x66);
  EXPECT_EQ(*ap.read_msr(0x810 + 3), 1u << 6);
  ASSERT_TRUE(ap.write_msr(0x80b, 0));
  EXPECT_EQ(*ap.read_msr(0x810 + 3), 0u);
  // 64-bit ICR: 32-bit destination.
  ASSERT_TRUE(ap.write_msr(0x830, (0x1234ull << 32) | 0x4000 | 0x55));
  ASSERT_FALSE(bus.messages.empty());
  EXPECT_EQ(bus.messages.back().dest, 0x1234u);
  EXPECT_TRUE(bus.messages.back().x2apic_dest);
  EXPECT_EQ(*ap.read_msr(0x830), (0x1234ull << 32) | 0x4055);
  // The timer through MSRs.
  ASSERT_TRUE(ap.write_msr(0x83e, 0xb));
  ASSERT_TRUE(ap.write_msr(0x832, 0x41));
  ASSERT_TRUE(ap.write_msr(0x838, 300));
  clock.advance_ns(100);
  EXPECT_EQ(*ap.read_msr(0x839), 200u);
  EXPECT_FALSE(ap.write_msr(0x839, 1));
  // xAPIC page is not decoded in x2APIC mode.
  EXPECT_FALSE(ap.mmio_enabled());
}

TEST(LapicX2apic, DestinationMatching) {
  ManualClock clock;
  ApicRouter router;
  Lapic a(VcpuId(0), clock, router), b(VcpuId(0x21), clock, router);
  router.add(&a);
  router.add(&b);
  for (Lapic* l : {&a, &b}) {
    ASSERT_TRUE(l->set_apic_base(0xfee00c00 | (l == &a ? 0x100 : 0)));
    ASSERT_TRUE(l->write_msr(0x80f, 0x1ff));
  }
  ASSERT_TRUE(a.write_msr(0x830, (0x21ull << 32) | 0x4000 | 0x60));  // physical
  EXPECT_EQ(take(b), 0x60);
  ASSERT_TRUE(a.write_msr(0x830, (((2ull << 16) | 2) << 32) | 0x800 | 0x4000 | 0x61));  // cluster 2 bit 1
  EXPECT_EQ(take(b), 0x61);
  EXPECT_FALSE(a.has_interrupt());
  ASSERT_TRUE(a.write_msr(0x830, (0xffffffffull << 32) | 0x4000 | 0x62));  // broadcast
  EXPECT_EQ(take(a), 0x62);
  EXPECT_EQ(take(b), 0x62);
  // An 8-bit destination from an IOAPIC reaches an x2APIC by its ID.
  ApicMessage m;
  m.dest = 0x21;
  m.vector = Vector(0x63);
  EXPECT_EQ(router.deliver(m, nullptr), 1);
  EXPECT_EQ(take(b), 0x63);
  m.dest = 0x7;
  EXPECT_EQ(router.deliver(m, nullptr), -1);
}

TEST_F(LapicTest, InitKeepsIdAndBase) {
  enable();
  wr(ID, 0x07000000);
  wr(TPR, 0x20);
  wr(LDR, 0x04000000);
  apic.accept_interrupt(Vector(0x40), TriggerMode::Edge);
  apic.init();
  EXPECT_EQ(rd(ID), 0x07000000u);
  EXPECT_EQ(rd(TPR), 0u);
  EXPECT_EQ(rd(LDR), 0u);
  EXPECT_EQ(rd(SVR), 0xffu);
  EXPECT_FALSE(irr_bit(0x40));
  EXPECT_EQ(apic.apic_base(), 0xfee00900u);
}

TEST_F(LapicTest, StateRoundTripsWithRunningTimer) {
  enable();
  wr(TPR, 0x10);
  wr(LDR, 0x08000000);
  wr(LVT0, 0x700);
  wr(TDCR, 0x1);  // divide by 4
  wr(LVTT, 0x20000 | 0x30);
  wr(TMICT, 5000);
  apic.accept_interrupt(Vector(0x90), TriggerMode::Level);
  apic.acknowledge();
  apic.accept_interrupt(Vector(0xa1), TriggerMode::Edge);
  clock.advance_ns(4 * 1200);
  LapicState s = apic.get_state();
  uint32_t tmcct;
  std::memcpy(&tmcct, s.regs + TMCCT, 4);
  EXPECT_EQ(tmcct, 3800u);

  test::RecordingBus bus2;
  Lapic copy(VcpuId(0), clock, bus2);
  copy.set_state(s);
  LapicState s2 = copy.get_state();
  EXPECT_EQ(0, std::memcmp(s.regs, s2.regs, sizeof s.regs));
  // Both continue identically: same count later, same deadline, same vectors.
  clock.advance_ns(4 * 800);
  EXPECT_EQ(copy.mmio_read(TMCCT, 4), apic.mmio_read(TMCCT, 4));
  EXPECT_EQ(copy.mmio_read(TMCCT, 4), 3000u);
  EXPECT_EQ(copy.next_timer_deadline(), apic.next_timer_deadline());
  EXPECT_EQ(copy.acknowledge().raw(), 0xa1);
  copy.mmio_write(EOI, 0, 4);
  copy.mmio_write(EOI, 0, 4);
  ASSERT_EQ(bus2.eois.size(), 1u);
  EXPECT_EQ(bus2.eois[0], 0x90);
}

TEST_F(LapicTest, X2apicStateIdFormat) {
  Lapic ap(VcpuId(5), clock, bus);
  ASSERT_TRUE(ap.set_apic_base(0xfee00c00));
  LapicState legacy = ap.get_state();
  uint32_t id;
  std::memcpy(&id, legacy.regs + ID, 4);
  EXPECT_EQ(id, 5u << 24);
  ap.set_x2apic_api_format(true);
  LapicState modern = ap.get_state();
  std::memcpy(&id, modern.regs + ID, 4);
  EXPECT_EQ(id, 5u);
  ap.set_x2apic_api_format(false);
  ap.set_state(legacy);
  EXPECT_EQ(*ap.read_msr(0x802), 5u);
  EXPECT_EQ(*ap.read_msr(0x80d), 1u << 5);
}

}  // namespace

namespace {

TEST_F(LapicTest, OneShotToPeriodicKeepsCounting) {
  enable();
  wr(TDCR, 0xb);
  wr(LVTT, 0x40);
  wr(TMICT, 1'000'000);
  clock.advance_ns(400'000);
  wr(LVTT, 0x20040);  // periodic now: same count, same expiry
  EXPECT_EQ(rd(TMICT), 1'000'000u);
  EXPECT_EQ(rd(TMCCT), 600'000u);
  clock.advance_ns(600'000);
  EXPECT_EQ(take(apic), 0x40);
  EXPECT_EQ(*apic.next_timer_deadline() - clock.now(), 1'000'000);
}

}  // namespace

namespace {

// arch/x86/kernel/apic/apic.c setup_local_APIC() + clear_local_APIC() order
// on the BSP in xAPIC flat mode, then the ESR clearing dance.
TEST_F(LapicTest, LinuxBspSetupSequence) {
  wr(TPR, rd(TPR) & ~0xffu);
  wr(DFR, 0xffffffff);  // flat model
  wr(LDR, (rd(LDR) & ~0xff000000u) | (1u << 24));
  wr(SVR, (rd(SVR) & ~0xffu) | 0x100 | 0xff);  // enable, spurious vector 0xff
  EXPECT_TRUE(apic.sw_enabled());
  wr(LVT0, 0x700);  // ExtINT: the PIC goes through LINT0 (virtual wire)
  wr(LVT1, 0x400);  // NMI
  wr(LVTERR, 0xfe);
  wr(ESR, 0);
  wr(ESR, 0);
  EXPECT_EQ(rd(ESR), 0u);
  EXPECT_TRUE(apic.accepts_pic_interrupts());
  // A logical flat IPI to this CPU's bit reaches it.
  ApicMessage m;
  m.dest = 0x01;
  m.dest_mode = DestMode::Logical;
  m.vector = Vector(0xfd);
  EXPECT_TRUE(apic.matches(m, nullptr));
  m.dest = 0x02;
  EXPECT_FALSE(apic.matches(m, nullptr));
  // Linux's lapic_timer_set_oneshot + set_next_event.
  wr(LVTT, 0xec);
  wr(TDCR, 0x3);
  wr(TMICT, 62500);
  EXPECT_EQ(*apic.next_timer_deadline() - clock.now(), 1'000'000);
}

TEST_F(LapicTest, X2apicSelfIpiNeedsSoftwareEnable) {
  ASSERT_TRUE(apic.set_apic_base(0xfee00d00));
  ASSERT_TRUE(apic.write_msr(0x83f, 0x66));
  EXPECT_FALSE(apic.has_interrupt());
  ASSERT_TRUE(apic.write_msr(0x80f, 0x1ff));
  ASSERT_TRUE(apic.write_msr(0x83f, 0x66));
  EXPECT_EQ(apic.has_interrupt()->raw(), 0x66);
}

}  // namespace
