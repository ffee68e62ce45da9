// The in-kernel LAPIC timer in TSC-deadline mode (SDM vol. 3, 10.5.4.1;
// Linux 6.1 lapic.c kvm_set_lapic_tscdeadline_msr / kvm_get_...): the guest
// arms IA32_TSC_DEADLINE (MSR 0x6e0) with RDTSC + 1 ms and HLTs; each timer
// interrupt re-arms it. Linux 6.1 reports the feature only as
// KVM_CAP_TSC_DEADLINE_TIMER (user space sets CPUID.1:ECX[24] itself).
#include "abi.h"

namespace abitest {
namespace {

class TscDeadline : public Abi {};
ABI_SUITE(TscDeadline);

// Real mode at 0x1000, LAPIC through GS (base 0xfee00000): SVR = 0x1ff;
// LVT timer = vector 0x40, TSC-deadline mode; arm; sti; hlt loop. ISR:
// count at 0x6000, EOI, OUT 0x11 with the count, re-arm, IRET.
// arm: rdtsc; add eax, 1000000; adc edx, 0; mov ecx, 0x6e0; wrmsr; ret.
const std::vector<uint8_t> k_guest = {
    0xfa, 0x31, 0xc0, 0x8e, 0xd8, 0x8e, 0xd0, 0xbc, 0x00, 0x70, 0xc7, 0x06, 0x00, 0x01, 0x4c, 0x10, 0xc7,
    0x06, 0x02, 0x01, 0x00, 0x00, 0xc7, 0x06, 0x00, 0x60, 0x00, 0x00, 0x65, 0x66, 0xc7, 0x06, 0xf0, 0x00,
    0xff, 0x01, 0x00, 0x00, 0x65, 0x66, 0xc7, 0x06, 0x20, 0x03, 0x40, 0x00, 0x04, 0x00, 0xe8, 0x04, 0x00,
    0xfb, 0xf4, 0xeb, 0xfd, 0x0f, 0x31, 0x66, 0x05, 0x40, 0x42, 0x0f, 0x00, 0x66, 0x83, 0xd2, 0x00, 0x66,
    0xb9, 0xe0, 0x06, 0x00, 0x00, 0x0f, 0x30, 0xc3, 0xff, 0x06, 0x00, 0x60, 0x65, 0x66, 0xc7, 0x06, 0xb0,
    0x00, 0x00, 0x00, 0x00, 0x00, 0xa1, 0x00, 0x60, 0xe7, 0x11, 0xe8, 0xd5, 0xff, 0xcf};

}  // namespace

TEST_P(TscDeadline, TimerFiresAndRearms) {
  ASSERT_EQ(sys(KVM_CHECK_EXTENSION, KVM_CAP_TSC_DEADLINE_TIMER), 1);
  GuestMem mem(0x8000);
  std::memcpy(mem.ptr + 0x1000, k_guest.data(), k_guest.size());
  int vm = create_vm();
  ASSERT_EQ(io(vm, KVM_CREATE_IRQCHIP, 0ul), 0);
  ASSERT_EQ(set_region(vm, 0, 0, 0, mem.size, mem.uaddr()), 0);
  int vcpu = create_vcpu(vm, 0);
  kvm_run* run = map_run(vcpu);
  // What a client does with the capability: CPUID.1:ECX[24] on.
  auto tp = std::make_unique<CpuidBuf>();
  tp->nent = 256;
  ASSERT_EQ(sys(k_GET_SUPPORTED_CPUID, tp.get()), 0);
  for (uint32_t i = 0; i < tp->nent; ++i)
    if (tp->e[i].function == 1) tp->e[i].ecx |= 1u << 24;
  ASSERT_EQ(io(vcpu, k_SET_CPUID2, tp.get()), 0);
  start_real_mode_at_0x1000(vcpu);
  kvm_sregs s;
  ASSERT_EQ(io(vcpu, KVM_GET_SREGS, &s), 0);
  s.gs.base = 0xfee00000;
  ASSERT_EQ(io(vcpu, KVM_SET_SREGS, &s), 0);

  for (uint16_t want = 1; want <= 3; ++want) {
    long r;
    do {
      r = io(vcpu, KVM_RUN, 0ul);
    } while (r == -EINTR);
    ASSERT_EQ(r, 0);
    ASSERT_EQ(run->exit_reason, uint32_t(KVM_EXIT_IO)) << "tick " << want;
    EXPECT_EQ(run->io.port, 0x11);
    uint16_t v = 0;
    std::memcpy(&v, reinterpret_cast<uint8_t*>(run) + run->io.data_offset, 2);
    EXPECT_EQ(v, want);
  }
  // The ISR has not re-armed yet (OUT comes first): firing cleared the MSR.
  MsrsBuf m{};
  m.nmsrs = 1;
  m.e[0].index = 0x6e0;
  ASSERT_EQ(io(vcpu, k_GET_MSRS, &m), 1);
  EXPECT_EQ(m.e[0].data, 0u);
  // Host-initiated write and read back (QEMU's migration of the MSR): a
  // deadline far in the guest's future (relative to its TSC, MSR 0x10, so
  // the test does not depend on how long the host has been up), not fired.
  MsrsBuf t{};
  t.nmsrs = 1;
  t.e[0].index = 0x10;
  ASSERT_EQ(io(vcpu, k_GET_MSRS, &t), 1);
  const uint64_t deadline = t.e[0].data + (uint64_t(1) << 44);
  m.e[0].data = deadline;
  ASSERT_EQ(io(vcpu, k_SET_MSRS, &m), 1);
  m.e[0].data = 0;
  ASSERT_EQ(io(vcpu, k_GET_MSRS, &m), 1);
  EXPECT_EQ(m.e[0].data, deadline);
  prove("KVM_CAP_TSC_DEADLINE_TIMER");
}

}  // namespace abitest
