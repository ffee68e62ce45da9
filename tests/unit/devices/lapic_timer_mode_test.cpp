// Which LVT timer modes the guest may select (SDM vol. 3, 10.5.4.1; Linux 6.1
// lapic.c: LVTT is masked with timer_mode_mask, which KVM_SET_CPUID2 sets from
// CPUID.1:ECX[24]), and IA32_TSC_DEADLINE while the APIC is disabled.
#include <gtest/gtest.h>

#include <cstring>

#include "devices/lapic.h"
#include "fakes.h"

using namespace anykvm;
using namespace anykvm::devices;

namespace {

constexpr uint32_t SVR = 0xf0, LVTT = 0x320, TMICT = 0x380;
constexpr uint32_t k_periodic = 1u << 17, k_tsc_deadline = 2u << 17;

struct LapicTimerModeTest : ::testing::Test {
  ManualClock clock;
  test::RecordingBus bus;
  Lapic apic{VcpuId(0), clock, bus};

  uint32_t rd(uint32_t off) { return apic.mmio_read(off, 4); }
  void wr(uint32_t off, uint32_t v) { apic.mmio_write(off, v, 4); }
};

TEST_F(LapicTimerModeTest, TscDeadlineModeNeedsTheCpuidBit) {
  wr(SVR, 0x1ff);
  apic.set_tsc_deadline_mode_allowed(false);
  wr(LVTT, k_tsc_deadline | 0x40);
  EXPECT_EQ(rd(LVTT), 0x40u);  // the mode bit is dropped: one-shot
  apic.set_tsc_deadline(5000, 1000);
  EXPECT_EQ(apic.tsc_deadline(), 0u);
  EXPECT_FALSE(apic.next_timer_deadline());
  wr(LVTT, k_periodic | 0x40);  // periodic stays writable
  EXPECT_EQ(rd(LVTT), k_periodic | 0x40);
  wr(TMICT, 100);
  EXPECT_TRUE(apic.next_timer_deadline());

  apic.set_tsc_deadline_mode_allowed(true);
  wr(LVTT, k_tsc_deadline | 0x40);
  EXPECT_EQ(rd(LVTT), k_tsc_deadline | 0x40);
  apic.set_tsc_deadline(5000, 1000);
  EXPECT_EQ(apic.tsc_deadline(), 5000u);
}

TEST_F(LapicTimerModeTest, SetStateKeepsTheRegisterButNotAForbiddenMode) {
  // KVM_SET_LAPIC stores LVTT as given; the mode in effect is masked.
  wr(SVR, 0x1ff);
  apic.set_tsc_deadline_mode_allowed(false);
  LapicState s = apic.get_state();
  const uint32_t lvtt = k_tsc_deadline | 0x40;
  std::memcpy(s.regs + LVTT, &lvtt, 4);
  apic.set_state(s);
  EXPECT_EQ(rd(LVTT), lvtt);
  apic.set_tsc_deadline(5000, 1000);
  EXPECT_EQ(apic.tsc_deadline(), 0u);
}

TEST_F(LapicTimerModeTest, TscDeadlineMsrNeedsAnEnabledApic) {
  // kvm_get/set_lapic_tscdeadline_msr: 0 and ignored unless kvm_apic_present,
  // even with LVTT in TSC-deadline mode (restored by KVM_SET_LAPIC).
  ASSERT_TRUE(apic.set_apic_base(apic.apic_base() & ~bits(ApicBaseBits::Enable)));
  LapicState s = apic.get_state();
  const uint32_t lvtt = k_tsc_deadline | 0x40;
  std::memcpy(s.regs + LVTT, &lvtt, 4);
  apic.set_state(s);
  apic.set_tsc_deadline(5000, 1000);
  EXPECT_EQ(apic.tsc_deadline(), 0u);
  EXPECT_FALSE(apic.next_timer_deadline());
  ASSERT_TRUE(apic.set_apic_base(apic.apic_base() | bits(ApicBaseBits::Enable)));
  apic.set_tsc_deadline(5000, 1000);
  EXPECT_EQ(apic.tsc_deadline(), 5000u);
}

}  // namespace
